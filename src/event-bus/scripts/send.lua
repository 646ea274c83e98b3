-- SEND: accepts a user message. ARGV 7 clientMessageId ('' = none), 8 user part (JSON),
-- 9 chat.user_message data (JSON), 10 turns kept, 11 backlog bound of the partition,
-- 12 waiting messages allowed per session, 13 backlog entries older than this (ms) are stale,
-- 14 the message's token count, 15 the messageId it replaces ('' = none: regenerate and edit replace
-- the session's last message, which must have ended).
-- Returns {'queued', eventId, ahead} | {'duplicate', messageId} | {'revoked'} | {'backlog_full', n} | {'queue_full', n}
--       | {'not_last'} | {'not_ended'}
if redis.call('EXISTS', KEYS[9]) == 1 then return { 'revoked' } end
local cid = ARGV[7]
if cid ~= '' then
  local existing = redis.call('HGET', KEYS[1], 'c:' .. cid)
  if existing then return { 'duplicate', existing } end
end
local replace = ARGV[15]
if replace ~= '' then
  if redis.call('LINDEX', KEYS[2], -1) ~= replace then return { 'not_last' } end
  if not isFinal(redis.call('HGET', KEYS[1], replace .. ':status')) then return { 'not_ended' } end
end
local bound = tonumber(ARGV[11])
local backlog = redis.call('ZCARD', KEYS[7])
if backlog >= bound then
  -- entries of sessions that expired with messages unfinished are stale: drop them, count again
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', nowMs() - tonumber(ARGV[13]))
  backlog = redis.call('ZCARD', KEYS[7])
  if backlog >= bound then return { 'backlog_full', backlog } end
end
local active = redis.call('HGET', KEYS[1], 'active')
local ahead = 0
if active then
  local waiting = redis.call('LLEN', KEYS[3])
  if waiting >= tonumber(ARGV[12]) then return { 'queue_full', waiting } end
  ahead = waiting + 1
end
if replace ~= '' then
  -- it ended, so it is in no stream, queue or backlog: its fields and its place in the order go
  local gone = { 'c:' .. (redis.call('HGET', KEYS[1], replace .. ':cid') or '') }
  for _, suffix in ipairs(MESSAGE_FIELDS) do gone[#gone + 1] = replace .. suffix end
  -- the first message replaced: the title named it, and the new first answer gets a new one
  if redis.call('LLEN', KEYS[2]) == 1 then gone[#gone + 1] = 'title' end
  redis.call('RPOP', KEYS[2])
  redis.call('HDEL', KEYS[1], unpack(gone))
end
local fields = { MID .. ':user', ARGV[8], MID .. ':status', 'queued', MID .. ':ut', ARGV[14] }
if cid ~= '' then
  fields[#fields + 1] = 'c:' .. cid
  fields[#fields + 1] = MID
  fields[#fields + 1] = MID .. ':cid'
  fields[#fields + 1] = cid
end
if active then
  redis.call('RPUSH', KEYS[3], MID)
  redis.call('EXPIRE', KEYS[3], TTL)
else
  fields[#fields + 1] = 'active'
  fields[#fields + 1] = MID
  enqueue(MID)
end
redis.call('HSET', KEYS[1], unpack(fields))
local length = redis.call('RPUSH', KEYS[2], MID)
-- The oldest turns beyond the cap go, never one that has not ended (nor anything after it). In
-- batches of an eighth of the cap, so a long conversation pays for trimming once every few sends;
-- readers show the newest turns up to the cap.
local keep = tonumber(ARGV[10])
local slack = math.max(1, math.floor(keep / 8))
if length > keep + slack then
  local oldest = redis.call('LRANGE', KEYS[2], 0, math.min(length - keep, 500) - 1)
  local wanted = {}
  for _, id in ipairs(oldest) do
    wanted[#wanted + 1] = id .. ':status'
    wanted[#wanted + 1] = id .. ':cid'
  end
  local values = redis.call('HMGET', KEYS[1], unpack(wanted))
  local gone, trimmed = {}, 0
  for i, id in ipairs(oldest) do
    if not isFinal(values[2 * i - 1]) then break end
    trimmed = i
    for _, suffix in ipairs(MESSAGE_FIELDS) do
      gone[#gone + 1] = id .. suffix
    end
    -- its clientMessageId goes with it: a repeat that old is a new message
    if values[2 * i] then gone[#gone + 1] = 'c:' .. values[2 * i] end
  end
  if trimmed > 0 then
    redis.call('LTRIM', KEYS[2], trimmed, -1)
    redis.call('HDEL', KEYS[1], unpack(gone))
  end
end
local id = emit('chat.user_message', ARGV[9], true)
-- the backlog entry's time is the event id's (the Redis clock), no TIME call needed
redis.call('ZADD', KEYS[7], tonumber(string.match(id, '^(%d+)')), MID)
if active then
  emit('chat.status', '{' .. refJson(MID) .. ',"state":"queued","ahead":' .. ahead ..
    ',"detail":"Waiting for ' .. ahead .. ' earlier message(s) of this chat."}', false)
end
-- A new session's keys get their expiry now; later, every message's end refreshes it (conclude).
if length == 1 then refresh(true) end
return { 'queued', id, ahead }
