-- Shared by every state script (prepended when the scripts are registered, see ../scripts.ts).
-- State scripts take the same KEYS and the same first ARGV:
--   KEYS: 1 session hash, 2 order, 3 queue, 4 session log, 5 chat:outgoing:{T}, 6 chat:incoming:{T},
--         7 chat:backlog:{T}, 8 deleted mark, 9 revoked mark, 10 chat:dead:{T}
--   ARGV: 1 sessionId, 2 messageId, 3 history TTL (s), 4 STREAM_MAX_LEN, 5 SESSION_EVENTS_MAX_LEN, 6 group
local SID, MID, TTL, MAXLEN, LOGMAXLEN, GROUP = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

-- Every field a message keeps in the session hash (besides `c:<clientMessageId>`).
local MESSAGE_FIELDS = { ':user', ':assistant', ':status', ':attempt', ':owner', ':cancel', ':resume', ':cid', ':ut', ':at', ':ctx' }

local function isFinal(s) return s == 'completed' or s == 'failed' or s == 'cancelled' end

-- Ids are checked before they reach Redis ([A-Za-z0-9_-]), so they need no JSON escaping.
local function refJson(mid) return '"sessionId":"' .. SID .. '","messageId":"' .. mid .. '"' end

-- An event goes to the partition's stream and, when logged, to the session's log under the same
-- id: the log only ever receives ids of that one stream, so its ids only grow.
local function emit(eventType, data, logged)
  local id = redis.call('XADD', KEYS[5], 'MAXLEN', '~', MAXLEN, '*', 'v', '1', 'type', eventType, 'data', data)
  if logged then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', LOGMAXLEN, id, 'v', '1', 'type', eventType, 'data', data)
  end
  return id
end

-- No MAXLEN here: a trim could cut a head command nobody has read yet. The stream is bounded by
-- the acks (which delete) and the partition's backlog bound.
local function enqueue(mid)
  redis.call('XADD', KEYS[6], '*', 'v', '1', 'type', 'chat.generate', 'data', '{' .. refJson(mid) .. '}')
end

-- The session's keys expire TTL after their last write, refreshed at most every 64th of it: one
-- TTL read instead of three EXPIREs on most writes.
local function refresh(force)
  if not force then
    local left = redis.call('TTL', KEYS[1])
    if left > tonumber(TTL) - math.max(1, math.floor(tonumber(TTL) / 64)) then return end
  end
  redis.call('EXPIRE', KEYS[1], TTL)
  redis.call('EXPIRE', KEYS[2], TTL)
  redis.call('EXPIRE', KEYS[4], TTL)
end

-- Ends a message: its final status and reply, its final event, out of the backlog, and, when it
-- was the session's head, the next waiting message becomes the head and is queued for the workers.
-- `tokens`: the reply's token count (completed answers), kept for fitting later contexts.
local function conclude(mid, status, part, data, tokens)
  -- (its owner, cancel and resume fields mean nothing once it has ended; they go when it is trimmed)
  if tokens and tokens ~= '' then
    redis.call('HSET', KEYS[1], mid .. ':status', status, mid .. ':assistant', part, mid .. ':at', tokens)
  else
    redis.call('HSET', KEYS[1], mid .. ':status', status, mid .. ':assistant', part)
  end
  local id = emit('chat.' .. status, data, true)
  redis.call('ZREM', KEYS[7], mid)
  if redis.call('HGET', KEYS[1], 'active') == mid then
    local nextMid = redis.call('LPOP', KEYS[3])
    if nextMid then
      redis.call('HSET', KEYS[1], 'active', nextMid)
      enqueue(nextMid)
    else
      redis.call('HDEL', KEYS[1], 'active')
    end
  end
  refresh()
  return id
end

local function ack(entryId)
  if entryId ~= '' then
    redis.call('XACK', KEYS[6], GROUP, entryId)
    redis.call('XDEL', KEYS[6], entryId)
  end
end
