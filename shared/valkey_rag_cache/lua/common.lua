-- Shared helpers, prepended to every script. Everything a script touches lives in one hash slot: the
-- `{group}` of the entry's top-level namespace. Tokens are "<era>.<counter>" strings: the clock hands out
-- counters, and its era is drawn afresh whenever the clock key is (re)created, so no token value repeats.
local function clock_get(clock_key)
  local c = redis.pcall('HMGET', clock_key, 'e', 'c', 'i')
  -- A clock this code did not write (wrong type, odd era) counts as lost: it is made anew with a fresh era.
  if c.err or not c[1] or not string.match(c[1], '^%w+$') then return nil end
  return {c[1], tonumber(c[2]) or 0, tonumber(c[3]) or 0}
end

local function clock_ensure(clock_key, fresh_era)
  local c = clock_get(clock_key)
  if c then return c end
  redis.call('UNLINK', clock_key)
  redis.call('HSET', clock_key, 'e', fresh_era, 'c', 0, 'i', 0)
  return {fresh_era, 0, 0}
end

-- Issue a new token: it differs from every token this key (or any key) ever held. Version and namespace
-- tokens ('t:a', 't:n:..', one per group and namespace) live without a TTL, so writes need not keep them
-- alive; source tokens expire (with `ttl`), since sources come and go.
local function issue_token(clock_key, era, tok_key, ttl)
  local n = redis.call('HINCRBY', clock_key, 'c', 1)
  local tok = era .. '.' .. n
  if string.find(tok_key, ':t:s:', 1, true) then
    redis.call('SET', tok_key, tok, 'EX', ttl)
  else
    redis.call('SET', tok_key, tok)
  end
  return tok
end

-- Lengthen a key's TTL to at least `ttl` seconds; never shorten it.
local function extend_ttl(key, ttl)
  local t = redis.call('TTL', key)
  if t >= 0 and t < ttl then redis.call('EXPIRE', key, ttl) end
end

-- MGET in chunks: Lua's unpack() cannot spread more than a few thousand values.
local function mget(keys)
  local out = {}
  for i = 1, #keys, 1000 do
    local part = redis.call('MGET', unpack(keys, i, math.min(i + 999, #keys)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end

-- Register a group in the index of groups (standalone: `groups_key` is that index; cluster: '' and the client
-- registered it). A group that was not registered may have been skipped by an invalidation (the index was
-- evicted, or the group is new): retire everything it held. Returns the clock.
local function register_group(groups_key, base, fresh_era, tok_ttl)
  local clock_key = base .. 'clock'
  if groups_key ~= '' and redis.call('SADD', groups_key, base) == 1 then
    local clock = clock_ensure(clock_key, fresh_era)
    issue_token(clock_key, clock[1], base .. 't:a', tok_ttl)
    redis.call('HINCRBY', clock_key, 'i', 1)
    return clock_get(clock_key)
  end
  return clock_ensure(clock_key, fresh_era)
end

local function stat(stats_key, field, n)
  if stats_key ~= '' then redis.call('HINCRBY', stats_key, field, n) end
end

-- Parse an entry's header: "vrc1\n<era> <invalidations>\n<suffix> <token>\n...\n\n<body>" (entries of
-- older writers have no invalidation count). Returns the list of {token_suffix, token} pairs; nil when the
-- value is not an entry of this format (garbage, truncated, another version) or lacks the version token.
local function parse_entry(v)
  if string.sub(v, 1, 5) ~= 'vrc1\n' then return nil end
  local sep = string.find(v, '\n\n', 6, true)
  if not sep then return nil end
  local eol = string.find(v, '\n', 6, true)
  local era = string.match(string.sub(v, 6, eol - 1), '^([^ ]+) %d+$') or string.sub(v, 6, eol - 1)
  local deps = {}
  local has_all = false
  local pos = eol + 1
  while pos < sep do
    local nl = string.find(v, '\n', pos, true)
    local sp = string.find(v, ' ', pos, true)
    if not sp or sp > nl then return nil end
    local suffix = string.sub(v, pos, sp - 1)
    local tok = string.sub(v, sp + 1, nl - 1)
    if not string.find(tok, '.', 1, true) then tok = era .. '.' .. tok end
    if suffix == 'a' then has_all = true end
    deps[#deps + 1] = {suffix, tok}
    pos = nl + 1
  end
  if not has_all then return nil end
  return deps
end

-- 'ok' when every token the entry recorded is still current, 'stale' otherwise, nil for a bad value.
-- With the group's clock ({era, counter, invalidations}): every invalidation in a group bumps its
-- invalidation count before it replaces any token, so an entry written under the current era and count has
-- seen no invalidation since: its tokens need neither parsing nor comparing.
local function check_entry(v, tok_base, clock)
  if clock then
    local eol = string.find(v, '\n', 6, true)
    local sp = eol and string.find(v, ' ', 6, true)
    if sp and sp < eol and string.sub(v, 1, 5) == 'vrc1\n' and string.find(v, '\n\n', eol, true)
        and string.sub(v, 6, sp - 1) == clock[1] and tonumber(string.sub(v, sp + 1, eol - 1)) == clock[3] then
      return 'ok'
    end
  end
  local deps = parse_entry(v)
  if not deps then return nil end
  local keys = {}
  for i, d in ipairs(deps) do keys[i] = tok_base .. d[1] end
  local cur = mget(keys)
  for i, d in ipairs(deps) do
    if cur[i] ~= d[2] then return 'stale' end
  end
  return 'ok'
end

local function unlink_all(keys)
  local n = 0
  for i = 1, #keys, 500 do
    n = n + redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
  end
  return n
end

-- Namespaces are stored escaped (percent-encoding) in key names and the namespaces set, raw in counters.
local function unescape(s)
  return (string.gsub(s, '%%(%x%x)', function(h) return string.char(tonumber(h, 16)) end))
end

-- Count one invalidation in the group's counters. `label`: a namespace (namespace invalidation), '' (source
-- invalidation: each namespace it retired answers in, from `retired`), or '*' (version bump: every
-- namespace that has counters in this group).
local function count_invalidation(base, label, retired)
  local stats_key = base .. 'stats'
  if label == '*' then
    local names = {}
    for _, f in ipairs(redis.call('HKEYS', stats_key)) do
      local ns = string.match(f, '^[^:]+:(.*)$')
      if ns and ns ~= '*' and ns ~= '' then names[ns] = true end
    end
    for ns in pairs(names) do redis.call('HINCRBY', stats_key, 'invalidations:' .. ns, 1) end
  elseif label == '' then
    for ns in pairs(retired) do redis.call('HINCRBY', stats_key, 'invalidations:' .. unescape(ns), 1) end
  else
    redis.call('HINCRBY', stats_key, 'invalidations:' .. label, 1)
  end
end

-- Invalidate token suffixes in the group whose keys start with `base`, deleting the dependents of sources.
-- Returns the number of entries deleted.
local function invalidate_group(base, fresh_era, ttl, label, suffixes)
  local clock_key = base .. 'clock'
  local clock = clock_ensure(clock_key, fresh_era)
  local era = clock[1]
  redis.call('HINCRBY', clock_key, 'i', 1)
  local deleted = 0
  local retired = {}
  local namespaces = nil
  for _, suffix in ipairs(suffixes) do
    local k = base .. 't:' .. suffix
    if string.sub(suffix, 1, 2) == 's:' then
      -- A source nobody cached needs no token: the invalidation counter above already stops racing writes.
      if redis.call('EXISTS', k) == 1 then issue_token(clock_key, era, k, ttl) end
      local dig = string.sub(suffix, 3)
      namespaces = namespaces or redis.call('SMEMBERS', base .. 'nss')
      for _, ns in ipairs(namespaces) do
        local dk = base .. 'd:' .. dig .. ':' .. ns
        local members = redis.call('SMEMBERS', dk)
        if #members > 0 then
          local keys = {}
          local entry_base = base .. 'e:' .. ns .. ':'
          for j, m in ipairs(members) do keys[j] = entry_base .. m end
          local n = unlink_all(keys)
          if n > 0 then retired[ns] = true end
          deleted = deleted + n
          redis.call('UNLINK', dk)
        end
      end
    else
      issue_token(clock_key, era, k, ttl)
    end
  end
  count_invalidation(base, label, retired)
  return deleted
end
