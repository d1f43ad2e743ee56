-- Hold a request's worst-case cost against a client's spend budgets, atomically across replicas.
-- KEYS[1] day spend, KEYS[2] month spend (the spend ledger's keys), KEYS[3] the client's holds (a hash);
-- all three share the client's hash tag.
-- ARGV: hold id, cents, hold lifetime (ms), day budget, month budget (-1: none).
-- Admitted while spent + held is under every budget; then the hold is added.
-- Returns {1} admitted, or {0, period index, spent, held} (numbers as strings: Lua would truncate them).
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local held = 0
local holds = redis.call('HGETALL', KEYS[3])
for i = 1, #holds, 2 do
  local cents, expires = string.match(holds[i + 1], '^(%S+) (%S+)$')
  if cents == nil or tonumber(expires) <= now then
    redis.call('HDEL', KEYS[3], holds[i])  -- a hold its process never ended (crash): gone when it expires
  else
    held = held + tonumber(cents)
  end
end
for p = 1, 2 do
  local budget = tonumber(ARGV[3 + p])
  if budget >= 0 then
    local spent = tonumber(redis.call('GET', KEYS[p]) or '0')
    if spent + held >= budget then
      return {0, p, tostring(spent), tostring(held)}
    end
  end
end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ' ' .. tostring(now + ttl))
redis.call('PEXPIRE', KEYS[3], ttl)
return {1}
