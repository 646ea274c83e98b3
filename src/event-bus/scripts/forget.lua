-- FORGET: KEYS 1 chat:workers. ARGV 1 consumer, 2 ms it must have been silent. A dead worker is
-- forgotten only long after its last heartbeat: a read it had open when it froze may still hand it
-- an entry until then (its name must stay listed as dead for that entry to be taken over).
-- Returns {'forgotten'} | {'kept'}
local now = nowMs()
local seen = redis.call('ZSCORE', KEYS[1], ARGV[1])
if seen and tonumber(seen) < now - tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return { 'forgotten' }
end
return { 'kept' }
