-- Shared helpers, one paragraph each (no blank line inside one): a script carries those it names, in this
-- order (scripts.py). Everything a script touches lives in one hash slot: the `{group}` of the entry's
-- top-level namespace. Tokens are "<era>.<counter>" strings: the clock hands out counters, and its era is
-- drawn afresh whenever the clock key is (re)created, so no token value repeats.
-- Anything under the prefix may hold what no writer of ours made (a tampered or damaged key): reads check
-- what they parse, and a key of the wrong kind is repaired, so such data is a miss, never a script error.

local function failed(reply) return type(reply) == 'table' and reply.err ~= nil end

-- Every key of a namespace tree, named from its base '<prefix>:{<group>}:' as keys.py's GroupKeys names them
-- (tests/core/test_core_layout.py checks both agree). Scripts get the fixed keys they touch in KEYS; these
-- names serve the families found in the data (the entries a dependency set lists, a header's tokens) and
-- the trees invalidate_everywhere visits on a standalone server. All share the base's hash tag.
-- (The write script names the two it needs from GROUP_SUFFIXES directly: a table of six names costs it more.)
local GROUP_SUFFIXES = {clock = 'clock', stats = 'stats', nss = 'nss', tokens = 't:', deps = 'd:',
                        entries = 'e:'}
local function group_keys(base)
  local g = {}
  for name, suffix in pairs(GROUP_SUFFIXES) do g[name] = base .. suffix end
  return g
end

-- Packed arguments: the small arguments of a hot script travel as one space-separated string (each made of
-- key-safe characters; one argument instead of a dozen keeps the client's encoding cheap). This list is the
-- one definition of the lookup's fields on this side, ops/lookup.py LookupArgs the other (a test checks they
-- agree). Words after the named fields are returned as `rest`. (write.lua, run for every cached answer,
-- reads its fields with one match instead, naming them in its first line: a string and a C call per word
-- here cost it ~30k instructions.)
local LOOKUP_ARGS = {'base', 'tokens', 'fresh_era', 'count_stats', 'token_ttl'}

local function unpack_args(packed, names)
  local out, rest, i = {}, {}, 0
  for w in string.gmatch(packed, '[^ ]+') do
    i = i + 1
    if names[i] then out[names[i]] = w else rest[#rest + 1] = w end
  end
  out.rest = rest
  return out
end

-- A counter as this code writes it: a small non-negative integer (HINCRBY answers up to 2^63, Lua numbers
-- are exact up to 2^53 and print as integers below 1e15).
local function counter(text)
  if type(text) ~= 'string' or #text > 14 or not string.match(text, '^%d+$') then return nil end
  return tonumber(text)
end

-- UTF-8 as Python's strict codec reads it: no overlong forms, no surrogates, nothing above U+10FFFF.
local function utf8_valid(text)
  local i = 1
  while i <= #text do
    local c, len = string.byte(text, i), 0
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4
    else return false end
    for j = i + 1, i + len - 1 do
      local b = string.byte(text, j)
      if not b or b < 0x80 or b > 0xBF then return false end
    end
    local b2 = string.byte(text, i + 1)
    if (c == 0xE0 and b2 < 0xA0) or (c == 0xED and b2 > 0x9F) or (c == 0xF0 and b2 < 0x90)
        or (c == 0xF4 and b2 > 0x8F) then
      return false
    end
    i = i + len
  end
  return true
end

-- A member of the index of groups exactly as keys.py writes it: '<prefix>:{<group>}:', the group (never
-- empty, no ':') percent-encoded by escape(). Nothing else is followed: a tampered member could otherwise
-- name keys outside the prefix.
local function valid_base(prefix, base)
  local head = prefix .. ':{'
  if type(base) ~= 'string' or string.sub(base, 1, #head) ~= head or string.sub(base, -2) ~= '}:' then
    return false
  end
  local group = string.sub(base, #head + 1, -3)
  if group == '' or string.find(group, '[^A-Za-z0-9_.%%-]') then return false end
  if string.find((string.gsub(group, '%%[0-9A-F][0-9A-F]', '')), '%', 1, true) then return false end
  local canonical = true
  local text = string.gsub(group, '%%(%x%x)', function(hex)
    local ch = string.char(tonumber(hex, 16))
    if string.find(ch, '^[A-Za-z0-9_.:-]$') then canonical = false end  -- escape() leaves these as they are
    return ch
  end)
  return canonical and utf8_valid(text)
end

-- The group's clock {era, counter, invalidations}, or nil when it is missing or holds anything this code did
-- not write (wrong type, odd era, counters that are not integers): such a clock counts as lost.
local function clock_get(clock_key)
  local c = redis.pcall('HMGET', clock_key, 'e', 'c', 'i')
  if failed(c) or type(c[1]) ~= 'string' or #c[1] > 40 or not string.match(c[1], '^%w+$') then return nil end
  local n, i = counter(c[2]), counter(c[3])
  if not n or not i then return nil end
  return {c[1], n, i}
end

-- A lost clock is made anew with a fresh era: tokens it issues can equal no token issued before, and a write
-- whose lookup saw the old clock is refused (its era differs). `read`: true when the caller has just read it
-- with clock_get and found it lost (no second read).
local function clock_ensure(clock_key, fresh_era, read)
  if not read then
    local c = clock_get(clock_key)
    if c then return c end
  end
  redis.call('UNLINK', clock_key)
  redis.call('HSET', clock_key, 'e', fresh_era, 'c', 0, 'i', 0)
  return {fresh_era, 0, 0}
end

-- A token as this code writes it: "<era>.<counter>". Returns its era and counter, or nil.
local function token_parts(tok)
  if type(tok) ~= 'string' then return nil end
  local era, n = string.match(tok, '^(%w+)%.(%d+)$')
  if not era or #n > 14 then return nil end
  return era, tonumber(n)
end

-- SADD to a set that only serves eager deletion and listings: a key of another type is replaced.
-- Returns SADD's answer; 1 also when the set had to be made anew.
local function sadd(key, member)
  local r = redis.pcall('SADD', key, member)
  if not failed(r) then return r end
  redis.call('UNLINK', key)
  return redis.call('SADD', key, member)
end

-- SMEMBERS, or nil (and the key deleted when `repair`) when the key holds something else than a set.
local function smembers(key, repair)
  local r = redis.pcall('SMEMBERS', key)
  if not failed(r) then return r end
  if repair then redis.call('UNLINK', key) end
  return nil
end

-- Issue a new token: it differs from every token this key (or any key) ever held. Version and namespace
-- tokens ('t:a', 't:n:..', one per group and namespace) live without a TTL, so writes need not keep them
-- alive; source tokens expire (with `ttl`), since sources come and go. Returns the token and its counter.
local function issue_token(clock_key, era, tok_key, ttl)
  local n = redis.call('HINCRBY', clock_key, 'c', 1)
  local tok = era .. '.' .. n
  if string.find(tok_key, ':t:s:', 1, true) then
    redis.call('SET', tok_key, tok, 'EX', ttl)
  else
    redis.call('SET', tok_key, tok)
  end
  return tok, n
end

-- MGET in chunks: Lua's unpack() cannot spread more than a few thousand values.
local function mget(keys)
  if #keys <= 1000 then return redis.call('MGET', unpack(keys)) end
  local out = {}
  for i = 1, #keys, 1000 do
    local part = redis.call('MGET', unpack(keys, i, math.min(i + 999, #keys)))
    for j = 1, #part do out[#out + 1] = part[j] end
  end
  return out
end

-- Retire everything a group held: a new version token, and an invalidation counted first (so racing writes
-- check their tokens). Returns the clock.
local function retire_group(clock_key, tok_base, fresh_era, tok_ttl)
  local clock = clock_ensure(clock_key, fresh_era)
  issue_token(clock_key, clock[1], tok_base .. 'a', tok_ttl)
  redis.call('HINCRBY', clock_key, 'i', 1)
  return clock_get(clock_key)
end

-- Register a group in the index of groups (standalone: `groups_key` is that index; cluster: '' and the client
-- registered it). A group that was not registered may have been skipped by an invalidation (the index was
-- evicted or replaced, or the group is new): retire everything it held. Returns the clock. `read`: the
-- caller has just read the clock with clock_get, and `clock` is what it found (nil: lost).
local function register_group(groups_key, base, clock_key, tok_base, fresh_era, tok_ttl, read, clock)
  -- An index of another type is made anew: every group then re-registers, and is retired, on first use.
  if groups_key ~= '' and sadd(groups_key, base) == 1 then
    return retire_group(clock_key, tok_base, fresh_era, tok_ttl)
  end
  return clock or clock_ensure(clock_key, fresh_era, read)
end

-- Count in the group's stats; counters no writer of ours made (not a hash, not an integer) start again.
local function stat(stats_key, field, n)
  if stats_key == '' or not failed(redis.pcall('HINCRBY', stats_key, field, n)) then return end
  if failed(redis.pcall('HDEL', stats_key, field)) then redis.call('UNLINK', stats_key) end
  redis.call('HINCRBY', stats_key, field, n)
end

-- The entry envelope (envelope.py describes the same format, and reads the body):
--   'vrc1\n<era> <invalidations>\n<suffix> <token>\n...<suffix> <token>\n\n<body>'
-- The clock's era and invalidation count when it was written, then every token it depends on ('a', 'n:..',
-- 's:..'); a token of the entry's own era is written as its counter alone. Written by entry_encode only
-- (its lines made by entry_line, or by write.lua the same way), read by entry_header and entry_deps only.
local ENTRY_MAGIC = 'vrc1\n'

-- One dependency line: '<suffix> <token>', a token of the entry's `era` as its counter alone (`n`: that
-- counter, when the caller has it at hand).
local function entry_line(suffix, era, tok, n)
  if n then return suffix .. ' ' .. n end
  local dot = string.find(tok, '.', 1, true)
  if string.sub(tok, 1, dot - 1) == era then tok = string.sub(tok, dot + 1) end
  return suffix .. ' ' .. tok
end

-- `lines`: the entry_line of every token, the version's among them (never empty).
local function entry_encode(era, invalidations, lines, body)
  return ENTRY_MAGIC .. era .. ' ' .. invalidations .. '\n' .. table.concat(lines, '\n') .. '\n\n' .. body
end

-- The header's era and invalidation count, and where its dependency lines start and end; nil when the value
-- is not an entry of this format (garbage, truncated, another version).
local function entry_header(v)
  if string.sub(v, 1, 5) ~= ENTRY_MAGIC then return nil end
  local eol = string.find(v, '\n', 6, true)
  local sep = eol and string.find(v, '\n\n', eol, true)
  if not sep then return nil end
  local era, inv = string.match(string.sub(v, 6, eol - 1), '^(%w+) (%d+)$')
  if not era or #inv > 14 then return nil end
  return era, tonumber(inv), eol + 1, sep
end

-- The {token_suffix, token} pairs of a header (from entry_header); nil when a line is not one of ours or the
-- version token is missing.
local function entry_deps(v, era, first, sep)
  local deps = {}
  local has_all = false
  local pos = first
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
  local era, inv, first, sep = entry_header(v)
  if not era then return nil end
  if clock and era == clock[1] and inv == clock[3] then return 'ok' end
  local deps = entry_deps(v, era, first, sep)
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
local function count_invalidation(stats_key, label, retired)
  if label == '*' then
    local names = {}
    local fields = redis.pcall('HKEYS', stats_key)
    if failed(fields) then fields = {} end  -- not a hash of ours: stat() below replaces it
    for _, f in ipairs(fields) do
      local ns = string.match(f, '^[^:]+:(.*)$')
      if ns and ns ~= '*' and ns ~= '' then names[ns] = true end
    end
    for ns in pairs(names) do stat(stats_key, 'invalidations:' .. ns, 1) end
  elseif label == '' then
    for ns in pairs(retired) do stat(stats_key, 'invalidations:' .. unescape(ns), 1) end
  else
    stat(stats_key, 'invalidations:' .. label, 1)
  end
end

-- Invalidate token suffixes in the group whose keys start with `base`, deleting the dependents of sources.
-- Returns the number of entries deleted.
local function invalidate_group(base, fresh_era, ttl, label, suffixes)
  local g = group_keys(base)
  local clock_key = g.clock
  local clock = clock_ensure(clock_key, fresh_era)
  local era = clock[1]
  redis.call('HINCRBY', clock_key, 'i', 1)
  local deleted = 0
  local retired = {}
  local namespaces = nil
  for _, suffix in ipairs(suffixes) do
    local k = g.tokens .. suffix
    if string.sub(suffix, 1, 2) == 's:' then
      -- A source nobody cached needs no token: the invalidation counter above already stops racing writes.
      if redis.call('EXISTS', k) == 1 then issue_token(clock_key, era, k, ttl) end
      local dig = string.sub(suffix, 3)
      -- The token is replaced: the sets below only serve eager deletion, so one of the wrong type goes.
      namespaces = namespaces or smembers(g.nss, true) or {}
      for _, ns in ipairs(namespaces) do
        local dk = g.deps .. dig .. ':' .. ns
        local members = smembers(dk, true) or {}
        if #members > 0 then
          local keys = {}
          local entry_base = g.entries .. ns .. ':'
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
  count_invalidation(g.stats, label, retired)
  return deleted
end

-- Invalidate one group with its failures kept to it: when something stops it half-way (data no writer of
-- ours made, a key the user may not write), the whole group is retired instead. Returns the number of entries
-- deleted, and the group base when even retiring it failed (the caller names it in its error).
local function invalidate_tree(base, fresh_era, ttl, label, suffixes)
  local ok, deleted = pcall(invalidate_group, base, fresh_era, ttl, label, suffixes)
  if ok then return deleted, nil end
  local g = group_keys(base)
  if pcall(retire_group, g.clock, g.tokens, fresh_era, ttl) then return 0, nil end
  return 0, base
end
