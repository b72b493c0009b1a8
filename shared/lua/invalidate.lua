-- Invalidates tokens in one group and eagerly deletes the dependents of the sources among them.
-- KEYS: clock, stats, namespaces-of-group set
-- ARGV: 1 token base, 2 deps base, 3 group base (for entry keys: base .. 'e:' .. ns .. ':' .. digest),
--       4 fresh era, 5 token ttl, 6 stats label, 7.. token suffixes ('a', 'n:..', 's:..')
-- Returns the number of entries deleted.
local clock_key = KEYS[1]
local clock = clock_ensure(clock_key, ARGV[4])
local era = clock[1]
local ttl = tonumber(ARGV[5])
redis.call('HINCRBY', clock_key, 'i', 1)
local deleted = 0
local namespaces = nil
for i = 7, #ARGV do
  local suffix = ARGV[i]
  local k = ARGV[1] .. suffix
  if string.sub(suffix, 1, 2) == 's:' then
    -- A source nobody cached needs no token: the invalidation counter above already stops racing writes.
    if redis.call('EXISTS', k) == 1 then issue_token(clock_key, era, k, ttl) end
    local dig = string.sub(suffix, 3)
    namespaces = namespaces or redis.call('SMEMBERS', KEYS[3])
    for _, ns in ipairs(namespaces) do
      local dk = ARGV[2] .. dig .. ':' .. ns
      local members = redis.call('SMEMBERS', dk)
      if #members > 0 then
        local keys = {}
        local base = ARGV[3] .. 'e:' .. ns .. ':'
        for j, m in ipairs(members) do keys[j] = base .. m end
        deleted = deleted + unlink_all(keys)
        redis.call('UNLINK', dk)
      end
    end
  else
    issue_token(clock_key, era, k, ttl)
  end
end
stat(KEYS[2], 'invalidations:' .. ARGV[6], 1)
return deleted
