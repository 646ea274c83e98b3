-- Prepended to every script (see ../scripts.ts): the Redis clock, the only clock scripts compare.
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
