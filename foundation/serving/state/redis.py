"""Shared state store on Redis, for several service replicas.

Layout (prefix defaults to "foundation"):
- `<prefix>:applied`            set of applied event ids (the idempotency record);
- `<prefix>:z:<type>:<id>`      sorted set of the entity's retained events, all with score 0 so members
                                sort lexicographically by `sort_key_string` = (event_time, event_id);
- `<prefix>:p:<type>:<id>`      hash member -> canonical event JSON, plus `#n` = events ever applied
                                (buckets for an aggregate entity), `#v` = version (events that changed
                                the entity) and `#h` = the eviction horizon of an aggregate entity;
- `<prefix>:b:<type>:<id>`      aggregate entities: sorted set of the retained bucket ends;
- `<prefix>:stats`, `<prefix>:meta`  sizes for /metrics; the max_events the keys were written with.

A batch is applied by one Lua script, which Redis runs atomically: the dedup check, the inserts into
every entity of every event, the count increments and the trims happen all or nothing, and no other
replica interleaves. Reads of several entities are one script too, so an entity's events and count
come from the same instant.

Durability is Redis's: the script's reply (our acknowledgement) follows the AOF write; run Redis with
`appendonly yes` and `appendfsync always` for acknowledged == durable (`everysec` may lose up to a
second of acknowledged events on a crash of the Redis host). The dedup set lives on one node, so Redis
Cluster is not supported; use a single primary (with replicas/Sentinel for failover).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis

from foundation.serving.state import base

# KEYS: [1] applied set, [2] stats hash, then per distinct entity k (1-based): [3k] event zset, [3k+1] hash,
#       [3k+2] bucket zset (aggregate entities only; unused otherwise).
# ARGV: [1] max_events, [2] number of entities K, [3 .. 2+K] 1 if entity k is an aggregate entity else 0,
#       then [3+K] number of events, then per event: event_id, member, payload, n_entities, then per entity
#       its index k and its bucket key (time_key_string of the bucket end; "" for non-aggregate entities).
APPLY_LUA = """
local max_events = tonumber(ARGV[1])
local n_ent_total = tonumber(ARGV[2])
local is_agg = {}
for k = 1, n_ent_total do is_agg[k] = ARGV[2 + k] == '1' end
local pos = 3 + n_ent_total
local n = tonumber(ARGV[pos])
pos = pos + 1
local result = {}
local added_events = {}
local new_buckets = {}
local retained = 0
local n_applied = 0
for i = 1, n do
  local event_id = ARGV[pos]
  local member = ARGV[pos + 1]
  local payload = ARGV[pos + 2]
  local n_ent = tonumber(ARGV[pos + 3])
  local added = redis.call('SADD', KEYS[1], event_id)
  result[i] = added
  if added == 1 then
    n_applied = n_applied + 1
    for j = 1, n_ent do
      local k = tonumber(ARGV[pos + 2 + 2 * j])
      local bucket = ARGV[pos + 3 + 2 * j]
      local h = KEYS[3 * k + 1]
      local keep = true
      if is_agg[k] then
        local horizon = redis.call('HGET', h, '#h')
        if horizon and bucket <= horizon then
          keep = false
        elseif redis.call('ZADD', KEYS[3 * k + 2], 0, bucket) == 1 then
          new_buckets[k] = (new_buckets[k] or 0) + 1
        end
      end
      if keep then
        redis.call('ZADD', KEYS[3 * k], 0, member)
        redis.call('HSET', h, member, payload)
        added_events[k] = (added_events[k] or 0) + 1
        retained = retained + 1
      end
    end
  end
  pos = pos + 4 + 2 * n_ent
end
local new_entities = 0
for k, cnt in pairs(added_events) do
  local z = KEYS[3 * k]
  local h = KEYS[3 * k + 1]
  local increment = cnt
  if is_agg[k] then increment = new_buckets[k] or 0 end
  local total = redis.call('HINCRBY', h, '#n', increment)
  redis.call('HINCRBY', h, '#v', cnt)
  if increment > 0 and total == increment then new_entities = new_entities + 1 end
  if is_agg[k] then
    local bz = KEYS[3 * k + 2]
    local card = redis.call('ZCARD', bz)
    if card > max_events + 1 then
      local popped = redis.call('ZPOPMIN', bz, card - max_events - 1)
      local cut = popped[#popped - 1]
      redis.call('HSET', h, '#h', cut)
      local old = redis.call('ZRANGEBYLEX', z, '-', '(' .. cut)
      for m = 1, #old do redis.call('HDEL', h, old[m]) end
      if #old > 0 then redis.call('ZREMRANGEBYLEX', z, '-', '(' .. cut) end
      retained = retained - #old
    end
  else
    local card = redis.call('ZCARD', z)
    if card > max_events then
      local popped = redis.call('ZPOPMIN', z, card - max_events)
      for m = 1, #popped, 2 do redis.call('HDEL', h, popped[m]) end
      retained = retained - #popped / 2
    end
  end
end
if n_applied > 0 then
  redis.call('HINCRBY', KEYS[2], 'n_entities', new_entities)
  redis.call('HINCRBY', KEYS[2], 'n_events_applied', n_applied)
  redis.call('HINCRBY', KEYS[2], 'n_events_retained', retained)
end
return result
"""

# KEYS: per entity, zset then hash; ARGV: per entity the lex lower bound of its members ('-': all, '(<sort key>':
# after that event). Returns per entity {count, version, payloads in (event_time, event_id) order}.
READ_LUA = """
local out = {}
for k = 1, #KEYS / 2 do
  local members = redis.call('ZRANGEBYLEX', KEYS[2 * k - 1], ARGV[k], '+')
  local count = redis.call('HGET', KEYS[2 * k], '#n') or '0'
  local version = redis.call('HGET', KEYS[2 * k], '#v') or '0'
  local payloads = {}
  if #members > 0 then payloads = redis.call('HMGET', KEYS[2 * k], unpack(members)) end
  out[k] = {count, version, payloads}
end
return out
"""


class RedisStateStore(base.StateStore):
    """State store shared by several replicas through one Redis primary.

    Args:
        url: redis URL, e.g. redis://127.0.0.1:6379/0.
        max_events: events retained per entity (buckets for aggregate entities); must equal what the
            keys were written with.
        buckets: aggregate entity type -> bucket width in ms.
        prefix: key prefix (several services may share one Redis).
        socket_timeout: seconds before a Redis call fails (the request then fails with 503).
    """

    def __init__(
        self,
        url: str,
        max_events: int = base.DEFAULT_MAX_EVENTS,
        buckets: dict[str, int] | None = None,
        prefix: str = "foundation",
        socket_timeout: float = 5.0,
    ):
        self.url = url
        self.max_events = base.check_max_events(max_events)
        self.buckets = base.check_buckets(buckets)
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=socket_timeout, decode_responses=True)
        self._apply = self.client.register_script(APPLY_LUA)
        self._read = self.client.register_script(READ_LUA)
        self._check_max_events_unchanged()

    def _check_max_events_unchanged(self) -> None:
        key = f"{self.prefix}:meta"
        layout = {"max_events": str(self.max_events), "buckets": json.dumps(self.buckets, sort_keys=True)}
        for name, value in layout.items():
            self.client.hsetnx(key, name, value)
            stored = self.client.hget(key, name)
            if stored != value:
                raise ValueError(
                    f"Redis prefix {self.prefix!r} was written with {name}={stored}, config says {value}; "
                    "use a new prefix (and replay) to change it"
                )

    def _entity_keys(self, etype: str, eid: str) -> tuple[str, str, str]:
        return f"{self.prefix}:z:{etype}:{eid}", f"{self.prefix}:p:{etype}:{eid}", f"{self.prefix}:b:{etype}:{eid}"

    def apply(self, events: Sequence[base.EventRecord]) -> list[bool]:
        if not events:
            return []
        first, flags = base.dedupe_batch(events)
        keys = [f"{self.prefix}:applied", f"{self.prefix}:stats"]
        entity_index: dict[tuple[str, str], int] = {}
        event_args: list[str | int] = []
        for i in first:
            ev = events[i]
            event_args.extend([ev.event_id, base.sort_key_string(ev.event_time, ev.event_id),
                               ev.payload_json(), len(ev.entities)])
            for ref in ev.entities:
                if ref not in entity_index:
                    entity_index[ref] = len(entity_index) + 1
                    keys.extend(self._entity_keys(*ref))
                width = self.buckets.get(ref[0])
                bucket = "" if width is None else base.time_key_string(base.bucket_end(ev.event_time, width))
                event_args.extend([entity_index[ref], bucket])
        aggregate = ["1" if etype in self.buckets else "0" for etype, _ in entity_index]
        args = [self.max_events, len(entity_index), *aggregate, len(first), *event_args]
        added = self._apply(keys=keys, args=args)
        applied_now = {events[i].event_id for i, a in zip(first, added) if int(a) == 1}
        return [flag and ev.event_id in applied_now for ev, flag in zip(events, flags)]

    def histories(self, refs: Sequence[tuple[str, str]]) -> list[base.EntityHistory]:
        return self._histories(refs, ["-"] * len(refs))

    def tails(self, refs: Sequence[tuple[str, str]], after: Sequence[tuple[int, str]]) -> list[base.EntityHistory]:
        return self._histories(refs, [f"({base.sort_key_string(int(t), str(i))}" for t, i in after])

    def _histories(self, refs: Sequence[tuple[str, str]], lower: list[str]) -> list[base.EntityHistory]:
        if not refs:
            return []
        keys = [k for ref in refs for k in self._entity_keys(*ref)[:2]]
        rows = self._read(keys=keys, args=lower)
        return [
            base.EntityHistory(etype, eid, [json.loads(p) for p in payloads], int(count), int(version))
            for (etype, eid), (count, version, payloads) in zip(refs, rows)
        ]

    def versions(self, refs: Sequence[tuple[str, str]]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for ref in refs:
            pipe.hget(self._entity_keys(*ref)[1], "#v")
        return [int(v or 0) for v in pipe.execute()]

    def applied(self, event_ids: Sequence[str]) -> list[bool]:
        if not event_ids:
            return []
        return [bool(v) for v in self.client.smismember(f"{self.prefix}:applied", list(event_ids))]

    def stats(self) -> base.StoreStats:
        h = self.client.hgetall(f"{self.prefix}:stats")
        return base.StoreStats(
            int(h.get("n_entities", 0)), int(h.get("n_events_applied", 0)), int(h.get("n_events_retained", 0))
        )

    def ping(self) -> None:
        self.client.ping()

    def close(self) -> None:
        self.client.close()
