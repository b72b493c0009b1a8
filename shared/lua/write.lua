-- Stores one entry with its dependency index and TTLs, atomically.
-- KEYS: entry (the group's clock, stats, namespaces, tokens and dependency sets derive from the group base
--       and share its hash slot)
-- ARGV: 1 group base, 2 escaped namespace, 3 stats namespace, 4 ttl, 5 seen era ('' = unchecked),
--       6 seen counter, 7 seen invalidations, 8 fresh era, 9 entry digest, 10 body, 11 token ttl,
--       12 count stats, 13.. source digests
-- The entry records the tokens of the version ('a'), of every level of its namespace ('n:..') and of its
-- sources ('s:..'). Returns 1 when stored, 0 when refused because an invalidation happened since the lookup.
local entry_key, base = KEYS[1], ARGV[1]
local clock_key = base .. 'clock'
local stats_key = ARGV[12] == '1' and (base .. 'stats') or ''
local tok_base, deps_base, ns_esc, ns = base .. 't:', base .. 'd:', ARGV[2], ARGV[3]
local entry_base = base .. 'e:' .. ns_esc .. ':'
local ttl = tonumber(ARGV[4])
local seen_era = ARGV[5]
local tok_ttl = math.max(tonumber(ARGV[11]), ttl)
local suffixes = {'a'}
local level = nil
for seg in string.gmatch(ns_esc, '[^:]+') do
  level = level and (level .. ':' .. seg) or seg
  suffixes[#suffixes + 1] = 'n:' .. level
end
for i = 13, #ARGV do suffixes[#suffixes + 1] = 's:' .. ARGV[i] end
local clock = clock_get(clock_key)
if not clock then
  if seen_era ~= '' then
    -- The clock vanished since the lookup: what happened in between is unknown.
    stat(stats_key, 'refused:' .. ns, 1)
    return 0
  end
  clock = clock_ensure(clock_key, ARGV[8])
end
local era = clock[1]
local check = seen_era ~= ''
local seen_c, seen_i = tonumber(ARGV[6]), tonumber(ARGV[7])
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
local cur = redis.call('MGET', unpack(tok_keys))
local lines = {'vrc1', era .. ' ' .. clock[3]}
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
  lines[#lines + 1] = suffixes[j] .. ' ' .. tok
end
redis.call('SET', entry_key, table.concat(lines, '\n') .. '\n\n' .. ARGV[10], 'EX', ttl)
local digest = ARGV[9]
for i = 13, #ARGV do
  local dk = deps_base .. ARGV[i] .. ':' .. ns_esc
  redis.call('SADD', dk, digest)
  local t = redis.call('TTL', dk)
  if t == -1 or (t >= 0 and t < ttl) then redis.call('EXPIRE', dk, ttl) end
  -- Prune a couple of dead members on every write so sets of long-lived sources do not accumulate them.
  local probe = redis.call('SRANDMEMBER', dk, 2)
  for _, m in ipairs(probe) do
    if m ~= digest and redis.call('EXISTS', entry_base .. m) == 0 then redis.call('SREM', dk, m) end
  end
end
if #ARGV >= 13 then redis.call('SADD', base .. 'nss', ns_esc) end
stat(stats_key, 'writes:' .. ns, 1)
return 1
