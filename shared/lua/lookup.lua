-- KEYS: entry, clock, stats, [tops (standalone only)]
-- ARGV: token base, stats namespace, group base (the member of the index of groups), fresh era, count stats ('1'/'0'), token ttl
-- Returns {status, era, counter, invalidations[, body]}; status 1 hit, 0 miss, 2 bad, 3 stale, 4 no clock.
local entry_key, clock_key = KEYS[1], KEYS[2]
local stats_key = ARGV[5] == '1' and KEYS[3] or ''
local ns = ARGV[2]
local clock
if KEYS[4] then
  -- Standalone: a group missing from the index of groups may have been skipped by an invalidation (the
  -- index was evicted, or this group is new): register it and retire everything it held before.
  if redis.call('SADD', KEYS[4], ARGV[3]) == 1 then
    clock = clock_ensure(clock_key, ARGV[4])
    issue_token(clock_key, clock[1], ARGV[1] .. 'a', tonumber(ARGV[6]))
    redis.call('HINCRBY', clock_key, 'i', 1)
    clock = clock_get(clock_key)
  else
    clock = clock_ensure(clock_key, ARGV[4])
  end
else
  clock = clock_get(clock_key)
  if not clock then return {4, '', 0, 0} end
end
local v = redis.call('GET', entry_key)
if not v then
  stat(stats_key, 'misses:' .. ns, 1)
  return {0, clock[1], clock[2], clock[3]}
end
local state, sep = check_entry(v, ARGV[1])
if state == 'ok' then
  stat(stats_key, 'hits:' .. ns, 1)
  return {1, clock[1], clock[2], clock[3], string.sub(v, sep + 2)}
end
redis.call('UNLINK', entry_key)
if state == 'stale' then
  stat(stats_key, 'stale:' .. ns, 1)
  stat(stats_key, 'misses:' .. ns, 1)
  return {3, clock[1], clock[2], clock[3]}
end
stat(stats_key, 'bad:' .. ns, 1)
stat(stats_key, 'misses:' .. ns, 1)
return {2, clock[1], clock[2], clock[3]}
