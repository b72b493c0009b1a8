-- Standalone only (a script there may touch any key): invalidate in every group at once, one round trip.
-- KEYS: the index of groups   ARGV: 1 fresh era, 2 token ttl, 3 stats label, 4 key prefix, 5.. token suffixes
-- Each group is invalidated on its own (a damaged group is retired, and stops no other). Returns
-- {entries deleted, the bases of the groups that could be neither invalidated nor retired...}.
local suffixes = {}
for i = 5, #ARGV do suffixes[#suffixes + 1] = ARGV[i] end
local out = {0}
local bases = smembers(KEYS[1], true)
-- An index of another type is gone now: every group re-registers, and is retired, on its next use.
for _, base in ipairs(bases or {}) do
  if valid_base(ARGV[4], base) then
    local deleted, failed_base = invalidate_tree(base, ARGV[1], tonumber(ARGV[2]), ARGV[3], suffixes)
    out[1] = out[1] + deleted
    if failed_base then out[#out + 1] = failed_base end
  else
    -- Not a group of this prefix (a tampered index): never followed, and removed.
    redis.call('SREM', KEYS[1], base)
  end
end
return out
