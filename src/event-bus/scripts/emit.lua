-- EMIT: a worker's event while it answers (chat.thinking, chat.delta, chat.status), refused unless
-- the message is streaming under the caller's attempt (the fencing token).
-- ARGV 7 attempt, 8 event type, 9 data (JSON), 10 '1' = log it, 11 progress snapshot ('' = none):
-- the reply so far including this event, kept with this event's id (history resumes from it).
-- Returns {'emitted', eventId} | {'cancel_requested', eventId} | {'fenced'} | {'gone'} | {'rewound'}
local st = redis.call('HMGET', KEYS[1], MID .. ':status', MID .. ':attempt', MID .. ':cancel')
if not st[1] then return { 'gone' } end
-- an attempt below ours: Redis lost our start (failover, older snapshot); no newer attempt exists
if tonumber(st[2] or '0') < tonumber(ARGV[7]) then return { 'rewound' } end
if st[1] ~= 'streaming' or tonumber(st[2]) ~= tonumber(ARGV[7]) then return { 'fenced' } end
local id = emit(ARGV[8], ARGV[9], ARGV[10] == '1')
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], MID .. ':assistant', ARGV[11], MID .. ':resume', id) end
if st[3] then return { 'cancel_requested', id } end
return { 'emitted', id }
