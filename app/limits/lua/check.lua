-- One request against a client's request limit, its tokens-per-minute allowance and the
-- global limit, checked and counted atomically. GCRA: each key holds a theoretical arrival
-- time (TAT) in microseconds of Redis TIME, so the gateways' own clocks never matter.
-- A refused request changes nothing.
--
-- KEYS[1] client requests TAT   KEYS[2] client tokens TAT   KEYS[3] global TAT
-- ARGV[1] client interval us    ARGV[2] client period us (burst x interval)
-- ARGV[3] token interval us (0: no token limit)             ARGV[4] token window us
-- ARGV[5] global interval us (0: no global limit)           ARGV[6] global period us
--
-- Returns {allowed (1/0), refused by (0 none, 1 requests, 2 tokens, 3 global),
--          requests remaining, requests reset us, retry after us,
--          tokens remaining (-1: no token limit), tokens reset us}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function tat(key)
  local v = tonumber(redis.call('GET', key))
  if v and v > now then return v end
  return now
end

local function store(key, value)
  redis.call('SET', key, string.format('%d', math.floor(value)),
             'PX', string.format('%d', math.ceil((value - now) / 1000) + 1))
end

local ci, cp = tonumber(ARGV[1]), tonumber(ARGV[2])
local ti, tw = tonumber(ARGV[3]), tonumber(ARGV[4])
local gi, gp = tonumber(ARGV[5]), tonumber(ARGV[6])

local function remaining(debt)
  return math.max(0, math.floor((cp - debt) / ci + 1e-9))
end

local ctat = tat(KEYS[1])
local cnew = ctat + ci
local debt, tokens_left = 0, -1
if ti > 0 then
  debt = tat(KEYS[2]) - now
  tokens_left = math.max(0, math.floor((tw - debt) / ti + 1e-9))
end

if cnew - now > cp + 0.001 then
  return {0, 1, 0, ctat - now, cnew - cp - now, tokens_left, debt}
end
if ti > 0 and debt >= tw then
  return {0, 2, remaining(ctat - now), ctat - now, debt - tw + ti, tokens_left, debt}
end
if gi > 0 then
  local gnew = tat(KEYS[3]) + gi
  if gnew - now > gp + 0.001 then
    return {0, 3, remaining(ctat - now), ctat - now, gnew - gp - now, tokens_left, debt}
  end
  store(KEYS[3], gnew)
end
store(KEYS[1], cnew)
return {1, 0, remaining(cnew - now), cnew - now, 0, tokens_left, debt}
