-- Lists the live dependents of sources in one group, as entry keys.
-- KEYS: namespaces-of-group set   ARGV: 1 deps base, 2 group base, 3 token base, 4.. source digests
local out = {}
local namespaces = redis.call('SMEMBERS', KEYS[1])
for i = 4, #ARGV do
  for _, ns in ipairs(namespaces) do
    local base = ARGV[2] .. 'e:' .. ns .. ':'
    for _, m in ipairs(redis.call('SMEMBERS', ARGV[1] .. ARGV[i] .. ':' .. ns)) do
      local v = redis.call('GET', base .. m)
      if v and check_entry(v, ARGV[3]) == 'ok' then out[#out + 1] = base .. m end
    end
  end
end
return out
