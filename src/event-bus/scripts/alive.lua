-- ALIVE: KEYS 1 chat:workers. ARGV 1 consumer, 2 liveness (ms). Returns {'alive'} | {'dead'}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) > now - tonumber(ARGV[2]) then return { 'alive' } end
return { 'dead' }
