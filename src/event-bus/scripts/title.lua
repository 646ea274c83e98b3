-- TITLE: the conversation's title, written by a worker after its first answer (docs/design.md,
-- "Titles"). ARGV 7 the title, 8 chat.title data (JSON).
-- Returns {'titled', eventId} | {'gone'} (the conversation was deleted or expired meanwhile)
if redis.call('EXISTS', KEYS[8]) == 1 or redis.call('EXISTS', KEYS[1]) == 0 then return { 'gone' } end
redis.call('HSET', KEYS[1], 'title', ARGV[7])
return { 'titled', emit('chat.title', ARGV[8], true) }
