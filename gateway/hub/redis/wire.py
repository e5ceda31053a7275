"""What the Redis broker stores and announces: key names, the Lua scripts, the live message format.

Keys of one channel share the hash tag ``{<channel>}``, so every script touches one Cluster slot:

``<prefix>:{<ch>}:meta``  hash: ``ep`` epoch (set when the log starts), ``s`` last seq, ``end`` the
                          last seq when the channel was closed (absent while open), ``bt`` and
                          ``bf`` the token and first seq of the last batch appended
``<prefix>:{<ch>}:log``   stream: entry id ``<seq>-0``, fields ``e`` (event name), ``d`` (data),
                          and ``b`` (the batch's token) on a batch's first entry

A published batch is one ``EVALSHA`` of :data:`APPEND`: it numbers the batch (``HINCRBY``), appends
each event with its seq as the entry id (``XADD MAXLEN ~``), refreshes the TTLs and announces the
whole batch with one ``PUBLISH`` on ``<prefix>:live``, the channel every node's follower reads.
A batch the publisher numbered itself while Redis was unreachable (``tail.py``) is appended at
those seqs, and a retry of a batch that already landed is recognised by its token and skipped.
A publish may carry a fence (the run's lease key and the publisher's token): the script refuses
the batch when that key holds a newer token (one extra ``GET``). A meta hash that vanished (Redis
restarted without persistence, or the keys expired) gets a new epoch, so no position from before can match what follows.

Live messages (bytes, fields separated by LF)::

    P\\n<channel>\\n<epoch>\\n<first seq>\\n<batch>     a published batch
    E\\n<channel>\\n<epoch>\\n<last seq>               the channel was closed after <last seq>

``<batch>`` is, per event, ``<len(name)> <len(data)>\\n<name><data>``: built once by the publisher,
split by slicing on the followers (no JSON work; data bytes pass through untouched).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.hub.broker import HubEvent

__all__ = [
    "APPEND",
    "CLOSE",
    "Keys",
    "LiveMessage",
    "decode_batch",
    "encode_batch",
    "parse_live",
]

APPEND = """
local n = tonumber(ARGV[6])
local want = tonumber(ARGV[10])
if KEYS[3] then
  local lease = redis.call('GET', KEYS[3])
  if lease and tonumber(string.match(lease, '^%d+')) > tonumber(ARGV[11 + 2 * n]) then
    if want > 0 and redis.call('HGET', KEYS[1], 'ep') == ARGV[9] then
      redis.call('HSET', KEYS[1], 'ep', ARGV[2])
    end
    return false
  end
end
local m = redis.call('HMGET', KEYS[1], 'ep', 's', 'bt', 'bf')
local ep = m[1]
if ep and m[3] == ARGV[8] then
  return {ep, tonumber(m[4]), 1}
end
if want > 0 and ep == ARGV[9] and tonumber(m[2]) >= want + n - 1 then
  local got = redis.call('XRANGE', KEYS[2], want .. '-0', want .. '-0')[1]
  if got and got[2][5] == 'b' and got[2][6] == ARGV[8] then
    return {ep, want, 1}
  end
end
if not ep then
  ep = ARGV[2]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'ep', ep, 's', 0)
end
local last = redis.call('HINCRBY', KEYS[1], 's', n)
local first = last - n + 1
redis.call('HDEL', KEYS[1], 'end')
redis.call('HSET', KEYS[1], 'bt', ARGV[8], 'bf', first)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], first .. '-0',
           'e', ARGV[11], 'd', ARGV[12], 'b', ARGV[8])
for i = 1, n - 1 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], (first + i) .. '-0',
             'e', ARGV[11 + 2 * i], 'd', ARGV[12 + 2 * i])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[1], 'P\\n' .. ARGV[5] .. '\\n' .. ep .. '\\n' .. first .. '\\n' .. ARGV[7])
local moved = 0
if want > 0 and (first ~= want or ep ~= ARGV[9]) then moved = 2 end
return {ep, first, moved}
"""
"""KEYS: meta, log, optionally the run's lease key (the fence). ARGV: live channel, epoch if new,
max length, TTL (s), channel name, event count, encoded batch, the batch's token, the epoch and
first seq it was numbered with locally (``""`` and ``0`` when Redis numbers it), then name and
data of each event, then (with a fence) the publisher's lease token.

With a fence, nil (nothing written) when the lease key holds ``<token>|...`` with a greater token
than the publisher's: it lost its run to another holder. (The lease key lives outside the
channel's hash tag: a Redis Cluster deployment would need it in the channel's slot.) A batch the
publisher numbered itself (held while Redis was away) was already delivered to its subscribers
at those positions, which the log gives to others' events: refused, it renames the log's epoch
(the new one drawn for the call) when that is still the one numbered with, so that no position
handed out in it matches an event of the log again (resuming from one gets
``runcast.history_lost``, then the snapshot).

Returns ``{epoch, first seq, status}``: ``0`` appended (at the wanted seqs, if any), ``1`` already
in the log (a retry whose first attempt landed: nothing appended, nothing announced), ``2``
appended at other seqs than wanted (the log moved on: another epoch, or others' events there).
The token is stored on the batch's first entry (field ``b``) and, for the channel's last batch,
in the meta (``bt``, ``bf`` its first seq): a retry is recognised by it, never by position
alone, so another node's events at those seqs are not mistaken for ours."""

CLOSE = """
if KEYS[3] then
  local lease = redis.call('GET', KEYS[3])
  if lease and tonumber(string.match(lease, '^%d+')) > tonumber(ARGV[4]) then
    return false
  end
end
local ep = redis.call('HGET', KEYS[1], 'ep')
if not ep then return false end
local last = redis.call('HGET', KEYS[1], 's')
redis.call('HSET', KEYS[1], 'end', last)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[1], 'E\\n' .. ARGV[3] .. '\\n' .. ep .. '\\n' .. last)
return {ep, last}
"""
"""KEYS: meta, log, optionally the run's lease key (the fence). ARGV: live channel, retention (s),
channel name, then (with a fence) the closer's lease token: nil when the lease has a newer holder,
as for ``APPEND``."""


class Keys:
    """Key and channel names under one prefix."""

    __slots__ = ("live", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.live = f"{prefix}:live"

    def meta(self, channel: str) -> str:
        return f"{self.prefix}:{{{channel}}}:meta"

    def log(self, channel: str) -> str:
        return f"{self.prefix}:{{{channel}}}:log"


def encode_batch(events: Sequence[HubEvent]) -> bytes:
    return b"".join(
        b"%d %d\n%s%s" % (len(name := e.name.encode()), len(e.data), name, e.data) for e in events
    )


def decode_batch(body: bytes) -> list[HubEvent]:
    events: list[HubEvent] = []
    pos = 0
    end = len(body)
    while pos < end:
        eol = body.index(b"\n", pos)
        name_len, data_len = map(int, body[pos:eol].split(b" "))
        start = eol + 1
        mid = start + name_len
        stop = mid + data_len
        events.append(HubEvent(body[start:mid].decode(), body[mid:stop]))
        pos = stop
    return events


class LiveMessage:
    """One parsed live message: a batch (``kind == b"P"``, ``seq`` its first) or an end (``b"E"``,
    ``seq`` the last)."""

    __slots__ = ("body", "channel", "epoch", "kind", "seq")

    def __init__(self, kind: bytes, channel: str, epoch: str, seq: int, body: bytes) -> None:
        self.kind = kind
        self.channel = channel
        self.epoch = epoch
        self.seq = seq
        self.body = body


def parse_live(data: bytes) -> LiveMessage:
    """Raises ValueError on anything that is not a message of :mod:`wire`."""
    parts = data.split(b"\n", 4)
    if len(parts) < 4 or parts[0] not in (b"P", b"E"):
        raise ValueError(f"not a runcast live message: {data[:60]!r}")
    body = parts[4] if len(parts) == 5 else b""
    return LiveMessage(parts[0], parts[1].decode(), parts[2].decode(), int(parts[3]), body)
