-- Standalone only: the last step of dropping a top-level namespace, after its tree was invalidated and its
-- other keys deleted. Forgets the group in the index of groups and deletes its clock in one atomic step, so
-- no lookup can recreate the clock in between and leave a group that invalidations would not visit.
-- KEYS: 1 the group's clock, 2 the index of groups   ARGV: 1 the group base
-- Returns the number of keys deleted.
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('UNLINK', KEYS[1])
