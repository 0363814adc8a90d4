"""Revocations across nodes (revocations.py): published, carried out, tailed."""

from __future__ import annotations

from typing import Any

import trio

from civicrealtime.cluster.entries import NODE, REASON, REVOKED_AT, TOKEN, USER, Keys
from civicrealtime.cluster.publisher import Publisher
from civicrealtime.cluster.reader import Wake
from civicrealtime.cluster.revocations import RevocationRelay
from civicrealtime.cluster.shared import ClusterStats, RedisAccess

from .conftest import entry, run_beat


class Applied:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def relay_of(access: RedisAccess) -> tuple[RevocationRelay, Publisher, Applied]:
    publisher = Publisher(access, ClusterStats(), limit=1 << 20, stream_maxlen=100)
    applied = Applied()
    relay = RevocationRelay(access, publisher, Wake(access, publisher), applied)
    return relay, publisher, applied


def test_a_revocation_made_here_is_published_with_its_time() -> None:
    access = RedisAccess(identity="a.1", keys=Keys("t"), timeout=1.0)
    relay, publisher, _ = relay_of(access)
    relay.publish("mallory", None, "account disabled", 1700000000.25)
    [item] = publisher.buffer.take(10)
    assert item.stream == b"t:revocations"
    assert item.fields == {
        NODE: b"a.1",
        USER: b"mallory",
        TOKEN: b"",
        REASON: b"account disabled",
        REVOKED_AT: b"1700000000.25",
    }


def test_other_nodes_revocations_are_carried_out_here() -> None:
    access = RedisAccess(identity="a.1", keys=Keys("t"), timeout=1.0)
    relay, _, applied = relay_of(access)
    relay.received(
        {
            b"t:revocations": [
                entry("1-0", n=b"b.1", u=b"mallory", t=b"", r=b"gone", at=b"1700000000.5"),
                entry("1-1", n=b"a.1", u=b"eve", t=b"", r=b"ours", at=b"1"),  # our own
                entry("1-2", n=b"b.1", u=b"", t=b"tok", r=b"", at=b"nan"),
                entry("1-3", n=b"b.1", u=b"", t=b"", r=b"nobody"),
                entry("1-4", n=b"c.1", u=b"olga", r=b"old node"),  # no time: the local one
            ],
            b"t:room:r:stream": [entry("1-5", n=b"b.1", u=b"x", r=b"not a revocation")],
        }
    )
    assert applied.calls == [
        {"user_id": "mallory", "token_id": None, "reason": "gone", "revoked_at": 1700000000.5},
        {"user_id": None, "token_id": "tok", "reason": "revoked", "revoked_at": None},
        {"user_id": "olga", "token_id": None, "reason": "old node", "revoked_at": None},
    ]


async def test_tailing_starts_from_the_end_of_the_stream(redis_access: RedisAccess) -> None:
    relay, publisher, applied = relay_of(redis_access)
    assert relay.positions(0) == ({}, False)  # not yet: where to start is not known
    client = redis_access.require()
    last = await client.xadd(redis_access.keys.revocations, {b"n": b"b.1", b"u": b"old"})
    await run_beat(redis_access, trio.current_time(), relay)
    assert relay.tailing.is_set()
    assert relay.positions(0) == ({redis_access.keys.revocations: last}, False)
    assert not applied.calls  # what was there before is in the store
    # The reader is woken to read the stream from there.
    assert [item.stream for item in publisher.buffer.take(10)] == [
        redis_access.keys.wake(redis_access.identity)
    ]


async def test_an_empty_stream_is_tailed_from_its_start(redis_access: RedisAccess) -> None:
    relay, _, _ = relay_of(redis_access)
    await run_beat(redis_access, trio.current_time(), relay)
    assert relay.positions(0) == ({redis_access.keys.revocations: b"0-0"}, False)
