-- End a hold: drop it and count what the request really cost, in one step.
-- KEYS[1] day spend, KEYS[2] month spend, KEYS[3] the client's holds.
-- ARGV: hold id, actual cents (0 when released), day key TTL (s), month key TTL (s).
redis.call('HDEL', KEYS[3], ARGV[1])
local cents = tonumber(ARGV[2])
if cents > 0 then
  for p = 1, 2 do
    redis.call('INCRBYFLOAT', KEYS[p], ARGV[2])
    redis.call('EXPIRE', KEYS[p], tonumber(ARGV[2 + p]))
  end
end
return 1
