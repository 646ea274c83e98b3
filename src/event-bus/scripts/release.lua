-- RELEASE: a worker hands back an entry it read but has no free slot for: acknowledged, deleted and
-- added again at the end of the stream for any worker. KEYS 1 chat:incoming:{T}. ARGV 1 group,
-- 2 entry id, 3... the entry's fields. Returns {'released', newId} | {'gone'}
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then return { 'gone' } end
return { 'released', redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3)) }
