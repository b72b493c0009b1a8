-- Stores one entry with its dependency index and TTLs, atomically.
-- KEYS: entry (the group's clock, stats, namespaces, tokens and dependency sets derive from the group base
--       and share its hash slot), [index of groups (standalone only)]
-- ARGV: 1 the small arguments, space-separated (every one is made of key-safe characters; one argument
--         instead of a dozen keeps the client's encoding cheap): group base, escaped namespace, ttl, seen era
--         ('-' = unchecked), seen counter, seen invalidations, fresh era, entry digest, token ttl, count stats
--         ('1'/'0'), housekeeping ('1'/'0': one write in several also lengthens source tokens' TTLs and prunes
--         dead members of the dependency sets it touches), then the source digests
--       2 stats namespace (any characters), 3 body
-- The entry records the tokens of the version ('a'), of every level of its namespace ('n:..') and of its
-- sources ('s:..'). Returns 1 when stored, 0 when refused because an invalidation happened since the lookup.
local a = {}
for w in string.gmatch(ARGV[1], '[^ ]+') do a[#a + 1] = w end
local entry_key, base = KEYS[1], a[1]
local clock_key = base .. 'clock'
local stats_key = a[10] == '1' and (base .. 'stats') or ''
local tok_base, deps_base, ns_esc, ns = base .. 't:', base .. 'd:', a[2], ARGV[2]
local entry_base = base .. 'e:' .. ns_esc .. ':'
local ttl = tonumber(a[3])
local seen_era = a[4] == '-' and '' or a[4]
local tok_ttl = math.max(tonumber(a[9]), ttl)
local digest = a[8]
local housekeeping = a[11] == '1'
local first_source = 12
local suffixes = {'a'}
local level = nil
for seg in string.gmatch(ns_esc, '[^:]+') do
  level = level and (level .. ':' .. seg) or seg
  suffixes[#suffixes + 1] = 'n:' .. level
end
for i = first_source, #a do suffixes[#suffixes + 1] = 's:' .. a[i] end
local clock = clock_get(clock_key)
if not clock and seen_era ~= '' then
  -- The clock vanished since the lookup: what happened in between is unknown.
  stat(stats_key, 'refused:' .. ns, 1)
  return 0
end
if KEYS[2] or not clock then
  clock = register_group(KEYS[2] or '', base, a[7], tok_ttl)
end
local era = clock[1]
local check = seen_era ~= ''
local seen_c, seen_i = tonumber(a[5]), tonumber(a[6])
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
local lines = {'vrc1', era .. ' ' .. clock[3]}
for j, k in ipairs(tok_keys) do
  local tok = cur[j]
  local t_era, t_n = token_parts(tok)
  if not t_era then tok = nil end  -- not a token of ours (missing, odd, another type): replace it
  if tok then
    if check and t_era == era and t_n > seen_c then
      -- Issued after the lookup: an invalidation (or a racing write) moved on; this answer may be stale.
      stat(stats_key, 'refused:' .. ns, 1)
      return 0
    end
    -- A source token that expires before its dependents only turns their hits into misses once an
    -- invalidation runs in the group, so lengthening it can wait for a housekeeping write.
    if housekeeping then extend_ttl(k, ttl) end
  else
    if check and clock[3] > seen_i then
      stat(stats_key, 'refused:' .. ns, 1)
      return 0
    end
    tok = issue_token(clock_key, era, k, tok_ttl)
  end
  local dot = string.find(tok, '.', 1, true)
  if string.sub(tok, 1, dot - 1) == era then tok = string.sub(tok, dot + 1) end
  lines[#lines + 1] = suffixes[j] .. ' ' .. tok
end
redis.call('SET', entry_key, table.concat(lines, '\n') .. '\n\n' .. ARGV[3], 'EX', ttl)
for i = first_source, #a do
  local dk = deps_base .. a[i] .. ':' .. ns_esc
  sadd(dk, digest)
  local t = redis.call('TTL', dk)
  if t == -1 or (t >= 0 and t < ttl) then redis.call('EXPIRE', dk, ttl) end
  if housekeeping then
    -- Prune a few dead members now and then, so sets of long-lived sources do not accumulate them.
    for _, m in ipairs(redis.call('SRANDMEMBER', dk, 4)) do
      if m ~= digest and redis.call('EXISTS', entry_base .. m) == 0 then redis.call('SREM', dk, m) end
    end
  end
end
if #a >= first_source then sadd(base .. 'nss', ns_esc) end
stat(stats_key, 'writes:' .. ns, 1)
return 1
