-- purge() helper for one key of a group: removes an entry that can no longer be served, and prunes dead
-- members from a dependency set; a key of the wrong type for its name is deleted.
-- KEYS: the key   ARGV: 1 kind ('e' or 'd'), 2 token base, 3 entry base
-- Returns the number of keys or members removed.
local k = KEYS[1]
if ARGV[1] == 'e' then
  local v = redis.pcall('GET', k)
  if not v then return 0 end
  if type(v) == 'string' and check_entry(v, ARGV[2]) == 'ok' then return 0 end
  return redis.call('UNLINK', k)
end
local members = smembers(k, false)
if not members then return redis.call('UNLINK', k) end
local removed = 0
for _, m in ipairs(members) do
  if redis.call('EXISTS', ARGV[3] .. m) == 0 then removed = removed + redis.call('SREM', k, m) end
end
return removed
