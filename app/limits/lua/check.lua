-- Admit up to N requests of one client (a lease: N > 1 only for fast clients, see
-- ratelimit.py) against its request limit, its tokens-per-minute allowance and the global
-- limit, checked and counted atomically. GCRA: each key holds a theoretical arrival time
-- (TAT) in microseconds of Redis TIME, so the gateways' own clocks never matter.
-- A refused request changes nothing; requests leased earlier but never admitted are handed
-- back first (REFUND), so a lease costs the client only what it used.
--
-- KEYS[1] client requests TAT   KEYS[2] client tokens TAT   KEYS[3] global TAT
-- ARGV[1] client interval us    ARGV[2] client period us (burst x interval)
-- ARGV[3] token interval us (0: no token limit)             ARGV[4] token window us
-- ARGV[5] global interval us (0: no global limit)           ARGV[6] global period us
-- ARGV[7] N, requests wanted (default 1)                    ARGV[8] REFUND, unused from the last lease (default 0)
--
-- Returns {admitted (0..N), refused by (0 none, 1 requests, 2 tokens, 3 global),
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
local want, refund = tonumber(ARGV[7] or '1'), tonumber(ARGV[8] or '0')

local function remaining(debt)
  return math.max(0, math.floor((cp - debt) / ci + 1e-9))
end

-- How many requests of interval i fit before a TAT of `at` runs more than p ahead of now.
local function fits(at, i, p)
  return math.floor((p + 0.001 - (at - now)) / i)
end

local ctat = math.max(now, tat(KEYS[1]) - refund * ci)
local gtat = 0
if gi > 0 then gtat = math.max(now, tat(KEYS[3]) - refund * gi) end
if refund > 0 then
  -- Handed back even when this call is refused.
  store(KEYS[1], ctat)
  if gi > 0 then store(KEYS[3], gtat) end
end
local debt, tokens_left = 0, -1
if ti > 0 then
  debt = tat(KEYS[2]) - now
  tokens_left = math.max(0, math.floor((tw - debt) / ti + 1e-9))
end

local n = math.min(want, fits(ctat, ci, cp))
if n < 1 then
  return {0, 1, 0, ctat - now, ctat + ci - cp - now, tokens_left, debt}
end
if ti > 0 and debt >= tw then
  return {0, 2, remaining(ctat - now), ctat - now, debt - tw + ti, tokens_left, debt}
end
if gi > 0 then
  n = math.min(n, fits(gtat, gi, gp))
  if n < 1 then
    return {0, 3, remaining(ctat - now), ctat - now, gtat + gi - gp - now, tokens_left, debt}
  end
  store(KEYS[3], gtat + n * gi)
end
local cnew = ctat + n * ci
store(KEYS[1], cnew)
return {n, 0, remaining(cnew - now), cnew - now, 0, tokens_left, debt}
