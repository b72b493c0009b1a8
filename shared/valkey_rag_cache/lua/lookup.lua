-- KEYS: entry, [index of groups (standalone only)]
-- ARGV: 1 '<group base> <fresh era> <count stats 1/0> <token ttl>' (one argument instead of four keeps the
--       client's encoding cheap on every hit; all are made of key-safe characters), 2 stats namespace
-- The group's clock, stats and tokens derive from the group base, which is also its member of the index of
-- groups. Returns {status, '<era> <counter> <invalidations>'[, entry]}; status 1 hit, 0 miss, 2 bad, 3 stale,
-- 4 no clock (one string for the clock: fewer reply elements to parse). A hit returns the whole stored
-- value: the caller reads the body after the blank line.
local base, fresh_era, count_stats, token_ttl = string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+)$')
local entry_key = KEYS[1]
local clock_key, tok_base = base .. 'clock', base .. 't:'
local stats_key = count_stats == '1' and (base .. 'stats') or ''
local ns = ARGV[2]
local clock
if KEYS[2] then
  clock = register_group(KEYS[2], base, fresh_era, tonumber(token_ttl))
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
local state = check_entry(v, tok_base, clock)
if state == 'ok' then
  stat(stats_key, 'hits:' .. ns, 1)
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
