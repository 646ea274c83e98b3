-- CLEAR: deletes a conversation. Every message not ended gets its chat.cancelled (the only thing
-- of it a resuming client still sees); the session's keys go, and so do its events in the
-- partition's stream (the log holds their ids); the deleted mark stays ARGV 7 s, the revoked
-- mark ARGV 8 s (0 = tokens not in use). ARGV 2 (messageId) is unused.
-- Returns {'cleared', events deleted, streaming messageIds...}
local open, streaming = {}, {}
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local status = redis.call('HGET', KEYS[1], id .. ':status')
  if status and not isFinal(status) then
    open[#open + 1] = id
    if status == 'streaming' then streaming[#streaming + 1] = id end
  end
  redis.call('ZREM', KEYS[7], id)
end
local deleted = 0
local from = '-'
while true do
  local page = redis.call('XRANGE', KEYS[4], from, '+', 'COUNT', 500)
  local ids = {}
  for _, entry in ipairs(page) do ids[#ids + 1] = entry[1] end
  if #ids > 0 then deleted = deleted + redis.call('XDEL', KEYS[5], unpack(ids)) end
  if #page < 500 then break end
  from = '(' .. page[#page][1]
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
for _, id in ipairs(open) do emit('chat.cancelled', '{' .. refJson(id) .. '}', true) end
if #open > 0 then redis.call('EXPIRE', KEYS[4], ARGV[7]) end
redis.call('SET', KEYS[8], '1', 'EX', ARGV[7])
if tonumber(ARGV[8]) > 0 then redis.call('SET', KEYS[9], '1', 'EX', ARGV[8]) end
local reply = { 'cleared', deleted }
for _, id in ipairs(streaming) do reply[#reply + 1] = id end
return reply
