-- ALIVE: KEYS 1 chat:workers. ARGV 1 consumer, 2 liveness (ms). Returns {'alive'} | {'dead'}
local now = nowMs()
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) > now - tonumber(ARGV[2]) then return { 'alive' } end
return { 'dead' }
