-- HEARTBEAT: KEYS 1 chat:workers. ARGV 1 consumer, 2 liveness (ms), 3 '1' alive | '0' stopping
-- (its unfinished work is to be taken over now). The Redis clock is the only clock compared.
-- Returns {'ok', consumers silent for longer than the liveness...}
local now = nowMs()
if ARGV[3] == '1' then redis.call('ZADD', KEYS[1], now, ARGV[1]) else redis.call('ZADD', KEYS[1], 0, ARGV[1]) end
local reply = { 'ok' }
for _, consumer in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, 16)) do
  reply[#reply + 1] = consumer
end
return reply
