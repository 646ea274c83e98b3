-- LOST: a worker found its message gone without a delete (Redis lost its data): the message ends
-- visibly with chat.failed. ARGV 7 the chat.failed data (JSON).
-- Returns {'announced', eventId} | {'deleted'} | {'present'}
if redis.call('EXISTS', KEYS[8]) == 1 then return { 'deleted' } end
if redis.call('HEXISTS', KEYS[1], MID .. ':status') == 1 then return { 'present' } end
local id = emit('chat.failed', ARGV[7], true)
redis.call('EXPIRE', KEYS[4], TTL)
return { 'announced', id }
