-- Store a task entry unless the cache already holds a newer or equal version.
--
-- The compare runs inside Redis so two writers racing (a read-through with a
-- PENDING row and a worker with the COMPLETED one) cannot interleave between
-- reading the stored version and writing theirs: the older state never lands
-- over the newer.
--
-- KEYS[1]  the entry key
-- ARGV[1]  the new version (integer)
-- ARGV[2]  the entry: "<version>:<encoded task>"
-- ARGV[3]  ttl in milliseconds; -1 keeps the entry until replaced, 0 means
--          already expired (the entry is removed, as an expired one would be)
--
-- Returns 1 when the entry was written, 0 when a newer or equal one was kept.

local stored = redis.pcall('GET', KEYS[1])
if type(stored) == 'string' then
  local stored_version = tonumber(string.match(stored, '^(%d+):'))
  if stored_version and stored_version >= tonumber(ARGV[1]) then
    return 0
  end
end
-- Anything else (no entry, an undecodable one, a key of another type) is
-- not a version worth protecting and is replaced.

local ttl_ms = tonumber(ARGV[3])
if ttl_ms == 0 then
  redis.call('DEL', KEYS[1])
elseif ttl_ms > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl_ms)
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
