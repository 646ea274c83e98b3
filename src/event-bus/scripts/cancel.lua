-- CANCEL: a person stops a message. ARGV 7 '1' = force (its worker is not alive), 8 empty reply part.
-- Waiting or queued: cancelled at once. Streaming: a cancel mark (the worker sees it at its next
-- write, besides the signal) and 'signal' with the owner; forced: cancelled at once with the last
-- progress snapshot, which fences the owner out.
-- Returns {'cancelled', eventId} | {'signal', owner} | {'ended'} | {'gone'}
local st = redis.call('HMGET', KEYS[1], MID .. ':status', MID .. ':owner', MID .. ':assistant')
if not st[1] then return { 'gone' } end
if isFinal(st[1]) then return { 'ended' } end
local data = '{' .. refJson(MID) .. '}'
if st[1] == 'queued' then
  if redis.call('HGET', KEYS[1], 'active') ~= MID then redis.call('LREM', KEYS[3], 0, MID) end
  return { 'cancelled', conclude(MID, 'cancelled', ARGV[8], data) }
end
if ARGV[7] == '1' then return { 'cancelled', conclude(MID, 'cancelled', st[3] or ARGV[8], data) } end
redis.call('HSET', KEYS[1], MID .. ':cancel', '1')
return { 'signal', st[2] or '' }
