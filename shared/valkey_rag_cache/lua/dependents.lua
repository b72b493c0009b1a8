-- Lists the live dependents of sources in one group, as entry keys; keys of the wrong type are skipped.
-- KEYS: 1 the group's namespaces set   ARGV: 1 group base, 2.. source digests
local g = group_keys(ARGV[1])
local out = {}
local namespaces = smembers(KEYS[1], false) or {}
for i = 2, #ARGV do
  for _, ns in ipairs(namespaces) do
    local base = g.entries .. ns .. ':'
    for _, m in ipairs(smembers(g.deps .. ARGV[i] .. ':' .. ns, false) or {}) do
      local v = redis.pcall('GET', base .. m)
      if type(v) == 'string' and check_entry(v, g.tokens) == 'ok' then out[#out + 1] = base .. m end
    end
  end
end
return out
