-- Replaces an index of groups of the wrong type with the groups found by scanning for their clocks.
-- KEYS: the index of groups   ARGV: the group bases found
if failed(redis.pcall('SCARD', KEYS[1])) then redis.call('UNLINK', KEYS[1]) end
for i = 1, #ARGV, 500 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
return #ARGV
