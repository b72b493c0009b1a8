-- Standalone only (a script there may touch any key): invalidate in every group at once, one round trip.
-- KEYS: the index of groups   ARGV: 1 fresh era, 2 token ttl, 3 stats label, 4.. token suffixes
local suffixes = {}
for i = 4, #ARGV do suffixes[#suffixes + 1] = ARGV[i] end
local deleted = 0
for _, base in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  deleted = deleted + invalidate_group(base, ARGV[1], tonumber(ARGV[2]), ARGV[3], suffixes)
end
return deleted
