-- LOST: a worker found its message gone without a delete (Redis lost its data): the message ends
-- visibly with chat.failed, and its command is acknowledged so nobody announces it again.
-- ARGV 7 the chat.failed data (JSON), 8 the entry id.
-- Returns {'announced', eventId} | {'deleted'} | {'trimmed'} | {'present'}
if redis.call('HEXISTS', KEYS[1], MID .. ':status') == 1 then return { 'present' } end
ack(ARGV[8])
redis.call('ZREM', KEYS[7], MID)
if redis.call('EXISTS', KEYS[8]) == 1 then return { 'deleted' } end
-- The session is still there: the message ended and was trimmed from a long history since (a
-- stale worker coming back): nothing was lost.
if redis.call('EXISTS', KEYS[1]) == 1 then return { 'trimmed' } end
local id = emit('chat.failed', ARGV[7], true)
redis.call('EXPIRE', KEYS[4], TTL)
return { 'announced', id }
