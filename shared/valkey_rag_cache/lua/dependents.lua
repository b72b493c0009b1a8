-- Lists the live dependents of sources in one group, as entry keys; keys of the wrong type are skipped.
-- KEYS: namespaces-of-group set   ARGV: 1 deps base, 2 group base, 3 token base, 4.. source digests
local out = {}
local namespaces = smembers(KEYS[1], false) or {}
for i = 4, #ARGV do
  for _, ns in ipairs(namespaces) do
    local base = ARGV[2] .. 'e:' .. ns .. ':'
    for _, m in ipairs(smembers(ARGV[1] .. ARGV[i] .. ':' .. ns, false) or {}) do
      local v = redis.pcall('GET', base .. m)
      if type(v) == 'string' and check_entry(v, ARGV[3]) == 'ok' then out[#out + 1] = base .. m end
    end
  end
end
return out
