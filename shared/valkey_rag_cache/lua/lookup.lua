-- KEYS: 1 entry, 2 the group's clock, 3 its stats, [4 the index of groups (standalone only)]
-- ARGV: 1 LOOKUP_ARGS packed (common.lua; ops/lookup.py LookupArgs): group base (its member of the index
--       of groups), token base, fresh era, count stats ('1'/'0'), token ttl; 2 stats namespace
-- Returns {status, '<era> <counter> <invalidations>'[, entry]}; status 1 hit, 0 miss, 2 bad, 3 stale,
-- 4 no clock (one string for the clock: fewer reply elements to parse). A hit returns the whole stored
-- value: the caller reads the body (envelope.py).
local a = unpack_args(ARGV[1], LOOKUP_ARGS)
local entry_key, clock_key = KEYS[1], KEYS[2]
local stats_key = a.count_stats == '1' and KEYS[3] or ''
local ns = ARGV[2]
local clock
if KEYS[4] then
  clock = register_group(KEYS[4], a.base, clock_key, a.tokens, a.fresh_era, tonumber(a.token_ttl))
else
  clock = clock_get(clock_key)
  if not clock then return {4, ''} end
end
local seen = clock[1] .. ' ' .. clock[2] .. ' ' .. clock[3]
local v = redis.pcall('GET', entry_key)
if type(v) == 'table' and v.err then
  -- Not a string (something else wrote this key): bad data under our prefix, so it goes.
  redis.call('UNLINK', entry_key)
  stat(stats_key, 'bad:' .. ns, 1)
  stat(stats_key, 'misses:' .. ns, 1)
  return {2, seen}
end
if not v then
  stat(stats_key, 'misses:' .. ns, 1)
  return {0, seen}
end
local state = check_entry(v, a.tokens, clock)
if state == 'ok' then
  stat(stats_key, 'hits:' .. ns, 1)
  local era, inv, first, sep = entry_header(v)
  if era ~= clock[1] or inv ~= clock[3] then
    -- Written before the group's latest invalidation, and every token it recorded is still current: what a
    -- write now would record. Stamped with the clock as it is now, its next hits need no token compared and
    -- no script (ops/lookup.py peek), until the next invalidation in the group.
    local lines = {}
    for i, d in ipairs(entry_deps(v, era, first, sep)) do lines[i] = entry_line(d[1], clock[1], d[2]) end
    redis.call('SET', entry_key, entry_encode(clock[1], clock[3], lines, string.sub(v, sep + 2)), 'KEEPTTL')
  end
  return {1, seen, v}
end
redis.call('UNLINK', entry_key)
if state == 'stale' then
  stat(stats_key, 'stale:' .. ns, 1)
  stat(stats_key, 'misses:' .. ns, 1)
  return {3, seen}
end
stat(stats_key, 'bad:' .. ns, 1)
stat(stats_key, 'misses:' .. ns, 1)
return {2, seen}
