-- START: a worker begins (or, after a retry or a takeover, begins again) the head message.
-- ARGV 7 entry id, 8 consumer, 9 empty reply part (JSON), 10 most earlier messages to send,
-- 11 the attempt the caller holds ('' = none: first start or takeover; a retry must still hold it),
-- 12 an attempt Redis lost (0 = none): the new attempt is above it,
-- 13 tokens the conversation may take (this message and earlier turns, each with its frame),
-- 14 a message's frame tokens.
-- The context is fitted here, so chat.started can say what went in: the newest earlier completed
-- turns (question and answer together) while they fit the budget and the message cap.
-- Returns {'started', attempt, eventId, userPart, contextMessages, omitted (0|1), untitled (0|1),
--          tokens the conversation takes (frames included), [user, assistant]... of the turns sent, oldest first}
--       | {'ended', status} | {'gone'} | {'cancelled', eventId} | {'fenced'}
local st = redis.call('HMGET', KEYS[1], MID .. ':status', MID .. ':attempt', MID .. ':cancel', MID .. ':user', MID .. ':assistant',
  MID .. ':ut')
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

-- A count missing (data older than token counting) is the part's stored size: an upper bound.
local function tokens(mid, suffix, counted)
  return tonumber(counted) or redis.call('HSTRLEN', KEYS[1], mid .. suffix)
end
local frame = tonumber(ARGV[14])
local budget = tonumber(ARGV[13]) - tokens(MID, ':user', st[6]) - frame
local cap = tonumber(ARGV[10])
local index = redis.call('LPOS', KEYS[2], MID) or 0
local chosen, omitted = {}, 0
-- Newest first, a page of the order at a time (a page of `cap` holds enough completed turns to
-- fill the cap, so one page is the usual cost); failed and cancelled turns are skipped, so they take
-- no room. The walk stops at the first completed turn that does not fit: never a hole in the middle.
local page = math.min(math.max(cap, 8), 1000)
local upto = index - 1
while upto >= 0 do
  local from = math.max(0, upto - page + 1)
  local ids = redis.call('LRANGE', KEYS[2], from, upto)
  local fields = {}
  for _, mid in ipairs(ids) do
    fields[#fields + 1] = mid .. ':status'
    fields[#fields + 1] = mid .. ':ut'
    fields[#fields + 1] = mid .. ':at'
  end
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  for i = #ids, 1, -1 do
    if values[3 * i - 2] == 'completed' then
      local cost = tokens(ids[i], ':user', values[3 * i - 1]) + tokens(ids[i], ':assistant', values[3 * i]) + 2 * frame
      if 2 * (#chosen + 1) > cap or cost > budget then
        omitted = 1
        break
      end
      budget = budget - cost
      chosen[#chosen + 1] = ids[i]
    end
  end
  if omitted == 1 then break end
  upto = from - 1
end

local started = '{' .. refJson(MID) .. ',"attempt":' .. attempt .. ',"contextMessages":' .. (2 * #chosen) ..
  ',"contextOmitted":' .. (omitted == 1 and 'true' or 'false') .. '}'
local id = emit('chat.started', started, true)
-- the empty reply stands for exactly the events up to chat.started: a history reader resumes after it
redis.call('HSET', KEYS[1], MID .. ':status', 'streaming', MID .. ':attempt', attempt, MID .. ':owner', ARGV[8],
  MID .. ':assistant', ARGV[9], MID .. ':resume', id, MID .. ':ctx', omitted)
local untitled = (index == 0 and redis.call('HEXISTS', KEYS[1], 'title') == 0) and 1 or 0
local reply = { 'started', attempt, id, st[4], 2 * #chosen, omitted, untitled, tonumber(ARGV[13]) - budget }
if #chosen > 0 then
  local wanted = {}
  for i = #chosen, 1, -1 do
    wanted[#wanted + 1] = chosen[i] .. ':user'
    wanted[#wanted + 1] = chosen[i] .. ':assistant'
  end
  for _, part in ipairs(redis.call('HMGET', KEYS[1], unpack(wanted))) do reply[#reply + 1] = part end
end
return reply
