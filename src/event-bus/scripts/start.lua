-- START: a worker begins (or, after a retry or a takeover, begins again) the head message.
-- ARGV 7 entry id, 8 consumer, 9 empty reply part (JSON), 10 earlier turns to return,
-- 11 the attempt the caller holds ('' = none: first start or takeover; a retry must still hold it),
-- 12 an attempt Redis lost (0 = none): the new attempt is above it.
-- Returns {'started', attempt, eventId, userPart, [user, assistant]... of completed earlier turns, oldest first}
--       | {'ended', status} | {'gone'} | {'cancelled', eventId} | {'fenced'}
local st = redis.call('HMGET', KEYS[1], MID .. ':status', MID .. ':attempt', MID .. ':cancel', MID .. ':user', MID .. ':assistant')
local status, attempt = st[1], tonumber(st[2] or '0')
if not status then
  ack(ARGV[7])
  return { 'gone' }
end
if isFinal(status) then
  ack(ARGV[7])
  return { 'ended', status }
end
if ARGV[11] ~= '' and tonumber(ARGV[11]) ~= attempt then return { 'fenced' } end
if st[3] then
  local id = conclude(MID, 'cancelled', st[5] or ARGV[9], '{' .. refJson(MID) .. '}')
  ack(ARGV[7])
  return { 'cancelled', id }
end
-- above an attempt Redis lost (ARGV 12), so it is never handed out twice
attempt = math.max(attempt, tonumber(ARGV[12] or '0') or 0) + 1
local id = emit('chat.started', '{' .. refJson(MID) .. ',"attempt":' .. attempt .. '}', true)
-- the empty reply stands for exactly the events up to chat.started: a history reader resumes after it
redis.call('HSET', KEYS[1], MID .. ':status', 'streaming', MID .. ':attempt', attempt, MID .. ':owner', ARGV[8],
  MID .. ':assistant', ARGV[9], MID .. ':resume', id)
local reply = { 'started', attempt, id, st[4] }
local index = redis.call('LPOS', KEYS[2], MID)
local limit = tonumber(ARGV[10])
if index and index > 0 and limit > 0 then
  local from = index - limit
  if from < 0 then from = 0 end
  local earlier = redis.call('LRANGE', KEYS[2], from, index - 1)
  local fields = {}
  for _, id in ipairs(earlier) do
    fields[#fields + 1] = id .. ':status'
    fields[#fields + 1] = id .. ':user'
    fields[#fields + 1] = id .. ':assistant'
  end
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = 1, #earlier do
    if values[3 * i - 2] == 'completed' and values[3 * i - 1] and values[3 * i] then
      reply[#reply + 1] = values[3 * i - 1]
      reply[#reply + 1] = values[3 * i]
    end
  end
end
return reply
