-- Cluster only: called after the client added this group to the index of groups, when a lookup found no
-- clock, or with ARGV[4] = '1' when a write found the group missing from the index. Retires whatever the
-- group held (an invalidation may have skipped it) and returns the clock.
-- KEYS: clock   ARGV: token base, fresh era, token ttl, force ('1'/'0')
local clock = clock_get(KEYS[1])
if not clock or ARGV[4] == '1' then
  clock = clock_ensure(KEYS[1], ARGV[2])
  issue_token(KEYS[1], clock[1], ARGV[1] .. 'a', tonumber(ARGV[3]))
  redis.call('HINCRBY', KEYS[1], 'i', 1)
  clock = clock_get(KEYS[1])
end
return {clock[1], clock[2], clock[3]}
