-- Stores one entry with its dependency index and TTLs, atomically.
-- KEYS: 1 entry, 2 the group's clock, 3 its stats, 4 its namespaces set, [5 the index of groups (standalone
--       only)]; the tokens and dependency sets are named from the group base (one family per source)
-- ARGV: 1 WRITE_ARGS packed (common.lua; ops/write.py WriteArgs): group base, escaped namespace, ttl, seen
--         era ('-' = unchecked), seen counter, seen invalidations, fresh era, entry digest, token ttl, count
--         stats ('1'/'0'), housekeeping ('1'/'0': one write in several also lengthens source tokens' TTLs and
--         prunes dead members of the dependency sets it touches), then the source digests
--       2 stats namespace (any characters), 3 body
-- The entry records the tokens of the version ('a'), of every level of its namespace ('n:..') and of its
-- sources ('s:..'). Returns 1 when stored, 0 when refused because an invalidation happened since the lookup.
local a = unpack_args(ARGV[1], WRITE_ARGS)
local g = group_keys(a.base)
local entry_key, clock_key, nss_key, groups_key = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
local stats_key = a.count_stats == '1' and KEYS[3] or ''
local tok_base, deps_base, ns_esc, ns = g.tokens, g.deps, a.namespace, ARGV[2]
local ttl = tonumber(a.ttl)
local seen_era = a.seen_era == '-' and '' or a.seen_era
local tok_ttl = math.max(tonumber(a.token_ttl), ttl)
local digest = a.digest
local housekeeping = a.housekeeping == '1'
local sources = a.rest
-- The token suffixes: the version's, each level of the namespace's, each source's.
local suffixes = {'a'}
local level = nil
for seg in string.gmatch(ns_esc, '[^:]+') do
  level = level and (level .. ':' .. seg) or seg
  suffixes[#suffixes + 1] = 'n:' .. level
end
for _, dig in ipairs(sources) do suffixes[#suffixes + 1] = 's:' .. dig end
local clock = clock_get(clock_key)
if not clock and seen_era ~= '' then
  -- The clock vanished since the lookup: what happened in between is unknown.
  stat(stats_key, 'refused:' .. ns, 1)
  return 0
end
if groups_key or not clock then
  clock = register_group(groups_key or '', a.base, clock_key, tok_base, a.fresh_era, tok_ttl, true, clock)
end
local era = clock[1]
local check = seen_era ~= ''
local seen_c, seen_i = tonumber(a.seen_counter), tonumber(a.seen_invalidations)
if check and era ~= seen_era then
  stat(stats_key, 'refused:' .. ns, 1)
  return 0
end
-- Every invalidation (and every group registration) in this group bumps 'i' first: when it has not moved
-- since the lookup, tokens newer than the lookup were issued by other writes, which retire nothing. Checking
-- them anyway would refuse concurrent first writes of a namespace or of a new source against each other.
if check and clock[3] <= seen_i then check = false end
local tok_keys = {}
for i, suffix in ipairs(suffixes) do tok_keys[i] = tok_base .. suffix end
local cur = mget(tok_keys)
local of_era = era_counter(era)  -- most tokens are of the clock's era: one match each
local lines = {}
for j, k in ipairs(tok_keys) do
  local tok = cur[j]
  local n = of_era(tok)  -- its counter's text
  local t_era, t_n
  if n then t_era, t_n = era, tonumber(n) else t_era, t_n = token_parts(tok) end  -- another era, or not ours
  if t_era then
    if check and t_era == era and t_n > seen_c then
      -- Issued after the lookup: an invalidation (or a racing write) moved on; this answer may be stale.
      stat(stats_key, 'refused:' .. ns, 1)
      return 0
    end
    -- A source token that expires before its dependents only turns their hits into misses once an
    -- invalidation runs in the group, so lengthening it can wait for a housekeeping write.
    if housekeeping then extend_ttl(k, ttl) end
  else  -- missing, odd, another type: replaced
    if check then
      stat(stats_key, 'refused:' .. ns, 1)
      return 0
    end
    tok, n = issue_token(clock_key, era, k, tok_ttl)
  end
  lines[j] = entry_line(suffixes[j], era, tok, n)
end
redis.call('SET', entry_key, entry_encode(era, clock[3], lines, ARGV[3]), 'EX', ttl)
for _, dig in ipairs(sources) do
  local dk = deps_base .. dig .. ':' .. ns_esc
  sadd(dk, digest)
  ensure_ttl(dk, ttl)
  if housekeeping then
    -- Prune a few dead members now and then, so sets of long-lived sources do not accumulate them.
    local entry_base = g.entries .. ns_esc .. ':'
    for _, m in ipairs(redis.call('SRANDMEMBER', dk, 4)) do
      if m ~= digest and redis.call('EXISTS', entry_base .. m) == 0 then redis.call('SREM', dk, m) end
    end
  end
end
if #sources > 0 then sadd(nss_key, ns_esc) end
stat(stats_key, 'writes:' .. ns, 1)
return 1
