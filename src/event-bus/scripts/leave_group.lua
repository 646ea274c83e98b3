-- LEAVE_GROUP: KEYS 1 a partition's chat:incoming:{T}. ARGV 1 group, 2 consumer. Deletes the
-- consumer only while it has nothing pending, in one step: an entry delivered to it meanwhile (a
-- read it still had open) is never dropped with it. Returns {'deleted'} | {'pending'} | {'none'}
local pending = redis.pcall('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if type(pending) == 'table' and pending.err then return { 'none' } end
if #pending > 0 then return { 'pending' } end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return { 'deleted' }
