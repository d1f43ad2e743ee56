-- Count an answer's tokens against a client's tokens-per-minute allowance (GCRA, Redis TIME).
-- KEYS[1] client tokens TAT   ARGV[1] cost in us (tokens x token interval)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = tonumber(redis.call('GET', KEYS[1]))
if not v or v < now then v = now end
v = v + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', math.floor(v)),
           'PX', string.format('%d', math.ceil((v - now) / 1000) + 1))
return 1
