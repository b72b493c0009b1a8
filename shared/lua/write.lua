-- Stores one entry with its dependency index and TTLs, atomically.
-- KEYS: entry, clock, stats, namespaces-of-group set
-- ARGV: 1 token base, 2 deps base, 3 escaped namespace, 4 stats namespace, 5 ttl, 6 seen era ('' = unchecked),
--       7 seen counter, 8 seen invalidations, 9 fresh era, 10 entry digest, 11 body, 12 token ttl,
--       13 entry base (entry key without digest), 14 count stats, 15.. token suffixes ('a', 'n:..', 's:..')
-- Returns 1 when stored, 0 when refused because an invalidation happened since the lookup.
local entry_key, clock_key = KEYS[1], KEYS[2]
local stats_key = ARGV[14] == '1' and KEYS[3] or ''
local tok_base, deps_base, ns_esc, ns = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl = tonumber(ARGV[5])
local seen_era = ARGV[6]
local tok_ttl = math.max(tonumber(ARGV[12]), ttl)
local clock = clock_get(clock_key)
if not clock then
  if seen_era ~= '' then
    -- The clock vanished since the lookup: what happened in between is unknown.
    stat(stats_key, 'refused:' .. ns, 1)
    return 0
  end
  clock = clock_ensure(clock_key, ARGV[9])
end
local era = clock[1]
local check = seen_era ~= ''
local seen_c, seen_i = tonumber(ARGV[7]), tonumber(ARGV[8])
if check and era ~= seen_era then
  stat(stats_key, 'refused:' .. ns, 1)
  return 0
end
-- Every invalidation (and every group registration) in this group bumps 'i' first: when it has not moved
-- since the lookup, tokens newer than the lookup were issued by other writes, which retire nothing. Checking
-- them anyway would refuse concurrent first writes of a namespace or of a new source against each other.
if check and clock[3] <= seen_i then check = false end
local tok_keys = {}
for i = 15, #ARGV do tok_keys[#tok_keys + 1] = tok_base .. ARGV[i] end
local cur = redis.call('MGET', unpack(tok_keys))
local lines = {'vrc1', era}
for j, k in ipairs(tok_keys) do
  local tok = cur[j]
  if tok then
    local dot = string.find(tok, '.', 1, true)
    local t_era, t_n = string.sub(tok, 1, dot - 1), tonumber(string.sub(tok, dot + 1))
    if check and t_era == era and t_n > seen_c then
      -- Issued after the lookup: an invalidation (or a racing write) moved on; this answer may be stale.
      stat(stats_key, 'refused:' .. ns, 1)
      return 0
    end
    extend_ttl(k, ttl)
  else
    if check and clock[3] > seen_i then
      stat(stats_key, 'refused:' .. ns, 1)
      return 0
    end
    tok = issue_token(clock_key, era, k, tok_ttl)
  end
  local dot = string.find(tok, '.', 1, true)
  if string.sub(tok, 1, dot - 1) == era then tok = string.sub(tok, dot + 1) end
  lines[#lines + 1] = ARGV[14 + j] .. ' ' .. tok
end
redis.call('SET', entry_key, table.concat(lines, '\n') .. '\n\n' .. ARGV[11], 'EX', ttl)
local digest = ARGV[10]
local has_sources = false
for i = 15, #ARGV do
  local suffix = ARGV[i]
  if string.sub(suffix, 1, 2) == 's:' then
    has_sources = true
    local dk = deps_base .. string.sub(suffix, 3) .. ':' .. ns_esc
    redis.call('SADD', dk, digest)
    local t = redis.call('TTL', dk)
    if t == -1 or (t >= 0 and t < ttl) then redis.call('EXPIRE', dk, ttl) end
    -- Prune a couple of dead members on every write so sets of long-lived sources do not accumulate them.
    local probe = redis.call('SRANDMEMBER', dk, 2)
    for _, m in ipairs(probe) do
      if m ~= digest and redis.call('EXISTS', ARGV[13] .. m) == 0 then redis.call('SREM', dk, m) end
    end
  end
end
if has_sources then redis.call('SADD', KEYS[4], ns_esc) end
stat(stats_key, 'writes:' .. ns, 1)
return 1
