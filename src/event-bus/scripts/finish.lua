-- FINISH: a worker ends the message it answers: compare-and-set from streaming under its attempt
-- to a final status, the final event, the dead letter of a failure, the ack, the next message.
-- ARGV 7 entry id, 8 attempt, 9 status (completed|failed|cancelled), 10 reply part (JSON),
-- 11 final event data (JSON), 12 dead letter data (JSON, '' = none), 13 the reply's token count
-- ('' = not counted; fitting a later context then counts its stored size).
-- A completion while a cancel is recorded is stored and announced as cancelled.
-- Returns {status, eventId} | {'ended', status} | {'gone'} | {'fenced'} | {'rewound'}
local st = redis.call('HMGET', KEYS[1], MID .. ':status', MID .. ':attempt', MID .. ':cancel')
if not st[1] then
  ack(ARGV[7])
  return { 'gone' }
end
if isFinal(st[1]) then
  ack(ARGV[7])
  return { 'ended', st[1] }
end
-- an attempt below ours: Redis lost our start (failover, older snapshot); no newer attempt exists
if tonumber(st[2] or '0') < tonumber(ARGV[8]) then return { 'rewound' } end
if st[1] ~= 'streaming' or tonumber(st[2]) ~= tonumber(ARGV[8]) then return { 'fenced' } end
local status, data = ARGV[9], ARGV[11]
if status == 'completed' and st[3] then
  status = 'cancelled'
  data = '{' .. refJson(MID) .. '}'
end
local id = conclude(MID, status, ARGV[10], data, ARGV[13])
if status == 'failed' and ARGV[12] ~= '' then
  redis.call('XADD', KEYS[10], 'MAXLEN', '~', MAXLEN, '*', 'v', '1', 'type', 'chat.dead_letter', 'data', ARGV[12])
end
ack(ARGV[7])
return { status, id }
