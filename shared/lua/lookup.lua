-- KEYS: entry, [index of groups (standalone only)]
-- ARGV: 1 group base (its clock, stats and tokens are derived from it; also the member of the index of
--       groups), 2 stats namespace, 3 fresh era, 4 count stats ('1'/'0'), 5 token ttl
-- Returns {status, '<era> <counter> <invalidations>'[, entry]}; status 1 hit, 0 miss, 2 bad, 3 stale, 4 no
-- clock (one string for the clock: fewer reply elements to parse on every hit).
-- A hit returns the whole stored value: the caller reads the body after the blank line.
local entry_key, base = KEYS[1], ARGV[1]
local clock_key, tok_base = base .. 'clock', base .. 't:'
local stats_key = ARGV[4] == '1' and (base .. 'stats') or ''
local ns = ARGV[2]
local clock
if KEYS[2] then
  -- Standalone: a group missing from the index of groups may have been skipped by an invalidation (the
  -- index was evicted, or this group is new): register it and retire everything it held before.
  if redis.call('SADD', KEYS[2], base) == 1 then
    clock = clock_ensure(clock_key, ARGV[3])
    issue_token(clock_key, clock[1], tok_base .. 'a', tonumber(ARGV[5]))
    redis.call('HINCRBY', clock_key, 'i', 1)
    clock = clock_get(clock_key)
  else
    clock = clock_ensure(clock_key, ARGV[3])
  end
else
  clock = clock_get(clock_key)
  if not clock then return {4, ''} end
end
local seen = clock[1] .. ' ' .. clock[2] .. ' ' .. clock[3]
local v = redis.call('GET', entry_key)
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
