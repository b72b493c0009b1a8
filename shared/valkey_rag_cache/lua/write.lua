-- Stores one entry with its dependency index and TTLs, atomically.
-- KEYS: 1 entry, 2 the group's clock, 3 its stats, 4 its namespaces set, [5 the index of groups (standalone
--       only)]; the tokens and dependency sets are named from the group base (one family per source)
-- ARGV: 1 the fields of ops/write.py WriteArgs, in its order (the first line below names them), packed:
--         group base, escaped namespace, ttl, seen era ('-' = unchecked), seen counter, seen invalidations,
--         fresh era, entry digest, token ttl, count stats ('1'/'0'), housekeeping ('1'/'0': one write in
--         several also lengthens source tokens' TTLs and prunes dead members of the dependency sets it
--         touches), then the source digests
--       2 stats namespace (any characters), 3 body
-- The entry records the tokens of the version ('a'), of every level of its namespace ('n:..') and of its
-- sources ('s:..'). Returns 1 when stored, 0 when refused because an invalidation happened since the lookup.
-- Valkey runs this for every cached answer, and most of its cost is Lua's: each string it makes and each C
-- function it calls costs 1-3k instructions. So the fields are read by one match, and each string made
-- here is one a command or the entry needs.
local base, namespace, ttl, seen_era, seen_counter, seen_invalidations, fresh_era, digest, token_ttl,
  count_stats, housekeeping, rest = string.match(ARGV[1],
  '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) ?(.*)$')  -- 11 fields, then the sources
local entry_key, clock_key, nss_key, groups_key = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
local stats_key = count_stats == '1' and KEYS[3] or ''
local ns_esc, ns, body = namespace, ARGV[2], ARGV[3]
local tok_base = base .. GROUP_SUFFIXES.tokens
local ttl_s, ttl = ttl, tonumber(ttl)  -- passed on to commands as text: a number is formatted anew each time
if seen_era == '-' then seen_era = '' end
local tok_ttl = math.max(tonumber(token_ttl), ttl)
housekeeping = housekeeping == '1'
local sources = {}
for w in string.gmatch(rest, '%S+') do sources[#sources + 1] = w end
local clock = clock_get(clock_key)
if not clock and seen_era ~= '' then
  -- The clock vanished since the lookup: what happened in between is unknown.
  stat(stats_key, 'refused:' .. ns, 1)
  return 0
end
if groups_key or not clock then
  clock = register_group(groups_key or '', base, clock_key, tok_base, fresh_era, tok_ttl, true, clock)
end
local era = clock[1]
local check = seen_era ~= ''
local seen_c, seen_i = tonumber(seen_counter), tonumber(seen_invalidations)
if check and era ~= seen_era then
  stat(stats_key, 'refused:' .. ns, 1)
  return 0
end
-- Every invalidation (and every group registration) in this group bumps 'i' first: when it has not moved
-- since the lookup, tokens newer than the lookup were issued by other writes, which retire nothing. Checking
-- them anyway would refuse concurrent first writes of a namespace or of a new source against each other.
if check and clock[3] <= seen_i then check = false end
-- The tokens: the version's, each level of the namespace's, each source's. `heads` and `tails` make each
-- token's suffix ('a', 'n:' .. level, 's:' .. digest) without a string for it.
local heads, tails, tok_keys = {'a'}, {''}, {tok_base .. 'a'}
local colon = string.find(ns_esc, ':', 1, true)
while true do
  local level = colon and string.sub(ns_esc, 1, colon - 1) or ns_esc
  heads[#heads + 1], tails[#heads + 1] = 'n:', level
  tok_keys[#heads] = tok_base .. 'n:' .. level
  if not colon then break end
  colon = string.find(ns_esc, ':', colon + 1, true)
end
for _, dig in ipairs(sources) do
  heads[#heads + 1], tails[#heads + 1] = 's:', dig
  tok_keys[#heads] = tok_base .. 's:' .. dig
end
local cur = mget(tok_keys)
local of_era = '^' .. era .. '%.(%d+)$'  -- an era is '%w+': no pattern characters
-- The entry, as entry_encode writes it ('vrc1\n<era> <invalidations>\n<suffix> <token>\n...\n\n<body>'):
-- a token of the clock's era is written as its counter alone.
local lines = {}
for j, k in ipairs(tok_keys) do
  local tok = cur[j]
  local n = type(tok) == 'string' and string.match(tok, of_era)
  local t_era, t_n
  if n and #n <= 14 then
    t_era = era
    if check then t_n = tonumber(n) end
  else
    t_era, t_n = token_parts(tok)  -- another era, or not ours
    n = nil
  end
  if t_era then
    if check and t_era == era and t_n > seen_c then
      -- Issued after the lookup: an invalidation (or a racing write) moved on; this answer may be stale.
      stat(stats_key, 'refused:' .. ns, 1)
      return 0
    end
    -- A source token that expires before its dependents only turns their hits into misses once an
    -- invalidation runs in the group, so lengthening it can wait for a housekeeping write (GT: never
    -- shortened). The version's and the namespace levels' tokens live without a TTL: nothing to lengthen.
    if housekeeping and heads[j] == 's:' then redis.call('EXPIRE', k, ttl_s, 'GT') end
  else  -- missing, odd, another type: replaced
    if check then
      stat(stats_key, 'refused:' .. ns, 1)
      return 0
    end
    tok, n = issue_token(clock_key, era, k, tok_ttl)
  end
  lines[j] = heads[j] .. tails[j] .. ' ' .. (n or tok)
end
redis.call('SET', entry_key, entry_encode(era, clock[3], lines, body), 'EX', ttl_s)
local deps_base = base .. GROUP_SUFFIXES.deps
for _, dig in ipairs(sources) do
  local dk = deps_base .. dig .. ':' .. ns_esc
  sadd(dk, digest)
  -- A TTL of at least the entry's: lengthened (GT), or set on a new set (NX: GT counts none as forever).
  if redis.call('EXPIRE', dk, ttl_s, 'GT') == 0 then redis.call('EXPIRE', dk, ttl_s, 'NX') end
  if housekeeping then
    -- Prune a few dead members now and then, so sets of long-lived sources do not accumulate them.
    local entry_base = base .. GROUP_SUFFIXES.entries .. ns_esc .. ':'
    for _, m in ipairs(redis.call('SRANDMEMBER', dk, 4)) do
      if m ~= digest and redis.call('EXISTS', entry_base .. m) == 0 then redis.call('SREM', dk, m) end
    end
  end
end
if #sources > 0 then sadd(nss_key, ns_esc) end
stat(stats_key, 'writes:' .. ns, 1)
return 1
