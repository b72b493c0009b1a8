-- Invalidates tokens in one group and eagerly deletes the dependents of the sources among them.
-- KEYS: 1 the group's clock, 2 its stats, 3 its namespaces set (the tokens, dependency sets and entries it
--       reaches are named from the group base: the data lists them)
-- ARGV: 1 group base, 2 fresh era, 3 token ttl, 4 stats label, 5.. token suffixes ('a', 'n:..', 's:..')
-- Returns {entries deleted[, the group base when it could be neither invalidated nor retired]}.
local suffixes = {}
for i = 5, #ARGV do suffixes[#suffixes + 1] = ARGV[i] end
local deleted, failed_base = invalidate_tree(ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], suffixes)
return {deleted, failed_base}
