"""Relaying a track between two media planes over real UDP sockets on loopback (actors/media/relay.py)."""

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from actors.errors import NotFoundError
from actors.media import rtp
from actors.media.peer import ParticipantPeers
from actors.media.plane import MediaPlane
from actors.media.relay import (
    KIND_KEYFRAME,
    KIND_RTP,
    NONCE_SIZE,
    TAG_SIZE,
    RelayError,
    Sealer,
    decode,
    encode_prefix,
)
from actors.media.uptrack import CodecInfo, TrackParams, UpTrack
from tests.polling import wait_for
from tests.unit.test_rtp import packet

HOST = "127.0.0.1"
TRACK = "TR_relayedtrack1"
KEY = bytes(range(32))  # the cluster's relay key, as both workers read it from Ray
DIGESTS = 5000  # payload digests kept, to compare what the relay delivered with what went in
VP8 = TrackParams((CodecInfo(96, "video/VP8", 90000),), {rtp.MID_URI: 1})


def no_peer(sid: str) -> ParticipantPeers:
    raise NotFoundError(sid)


class Publisher:
    """Stands in for the tap receiver: records the keyframe requests that reach the publisher."""

    def __init__(self) -> None:
        self.keyframe_requests: list[str | None] = []

    async def request_upstream(self, rid: str | None, ssrc: int | None) -> None:
        self.keyframe_requests.append(rid)


@pytest.fixture
async def planes() -> AsyncIterator[tuple[MediaPlane, MediaPlane, Publisher]]:
    source = MediaPlane("media:a", no_peer, digest_limit=DIGESTS, relay_key=KEY)
    receiver = MediaPlane("media:b", no_peer, digest_limit=DIGESTS, relay_key=KEY)
    publisher = Publisher()
    up = UpTrack(TRACK, "PA_alice", "video", "video/VP8", ["q", "h", "f"], publisher.request_upstream)
    up.digest_limit = DIGESTS
    up.set_params(VP8)
    source.ups[TRACK] = up
    try:
        yield source, receiver, publisher
    finally:
        await source.close()
        await receiver.close()


async def start_relay(source: MediaPlane, receiver: MediaPlane) -> UpTrack:
    """What the TrackForwarder does: source's address and codecs to the receiver, its address back."""
    where = await source.relay_source(TRACK, HOST)
    address = await receiver.expect_relay(TRACK, "PA_alice", "video", "media:a", where, HOST)
    source.add_relay(TRACK, "media:b", address)
    return receiver.ups[TRACK]


async def feed(up: UpTrack, count: int, rid: str = "h", first_seq: int = 1) -> list[bytes]:
    sent = []
    for i in range(count):
        raw = packet(seq=first_seq + i, payload=bytes([0x10, 0x00, i % 256]) * 20)
        up.deliver(raw, rtp.parse_header(raw), rid)
        sent.append(raw)
    return sent


def test_seal_and_unseal() -> None:
    body = encode_prefix(KIND_RTP, TRACK, "f") + packet()
    ours, theirs = Sealer(KEY), Sealer(KEY)  # two workers of one cluster
    sealed = ours.seal(body)
    assert len(sealed) == len(body) + NONCE_SIZE + TAG_SIZE and theirs.unseal(sealed) == body
    assert ours.seal(body) != sealed  # a new nonce for every datagram
    assert Sealer(bytes(32)).unseal(sealed) is None  # another cluster's key
    tampered = bytearray(sealed)
    tampered[3] ^= 1
    assert theirs.unseal(bytes(tampered)) is None
    assert theirs.unseal(body) is None and theirs.unseal(b"") is None


def test_datagram_roundtrip_and_malformed() -> None:
    raw = packet()
    decoded = decode(encode_prefix(KIND_RTP, TRACK, "f") + raw)
    assert (decoded.kind, decoded.track_sid, decoded.rid, decoded.payload) == (KIND_RTP, TRACK, "f", raw)
    request = decode(encode_prefix(KIND_KEYFRAME, TRACK, None))
    assert (request.kind, request.rid, request.payload) == (KIND_KEYFRAME, None, b"")
    good = encode_prefix(KIND_RTP, TRACK, "q")
    for bad in (
        b"",
        b"\x00\x01\x02\x03",
        bytes([good[0], 9]) + good[2:],
        good[:5],
        good[:-1],
        b"\xa7\x01\x02\xff\xfe\x00",
    ):
        with pytest.raises(RelayError):
            decode(bad)


async def test_one_copy_reaches_the_receiving_plane_in_order(
    planes: tuple[MediaPlane, MediaPlane, Publisher],
) -> None:
    source, receiver, _ = planes
    source.ups[TRACK].announced_sizes = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}
    copy = await start_relay(source, receiver)
    assert copy.relayed_from == "media:a" and copy.params == VP8 and copy.simulcast
    assert copy.rids == ["q", "h", "f"] and copy.announced_sizes == source.ups[TRACK].announced_sizes
    sent = await feed(source.ups[TRACK], 50)
    await wait_for(lambda: copy.packets_in == 50, what="50 relayed packets")
    assert copy.layers["h"].packets == 50
    assert copy.digests_in == source.ups[TRACK].digests_in
    stats = source.stats()["tracks"][TRACK]["relay_out"]
    assert stats == {"media:b": {"packets": len(sent), "dropped": 0}}

    source.remove_relay(TRACK, "media:b")
    assert source.ups[TRACK].relay is None
    await feed(source.ups[TRACK], 5, first_seq=100)
    await asyncio.sleep(0.1)
    assert copy.packets_in == 50


async def test_keyframe_requests_travel_back_to_the_publisher(
    planes: tuple[MediaPlane, MediaPlane, Publisher],
) -> None:
    source, receiver, publisher = planes
    copy = await start_relay(source, receiver)
    await feed(source.ups[TRACK], 3, rid="f")
    await wait_for(lambda: copy.packets_in == 3, what="relayed packets")
    await copy.request_keyframe("f")
    await wait_for(lambda: publisher.keyframe_requests == ["f"], what="the publisher's keyframe request")


async def test_foreign_and_malformed_datagrams_are_dropped_and_counted(
    planes: tuple[MediaPlane, MediaPlane, Publisher],
) -> None:
    source, receiver, publisher = planes
    copy = await start_relay(source, receiver)
    assert receiver.relay.address is not None and source.relay.address is not None
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind((HOST, 0))
    try:
        raw = packet()
        body = encode_prefix(KIND_RTP, TRACK, "h") + raw
        worker = Sealer(KEY)  # a worker of this cluster, but not the track's source
        tampered = bytearray(worker.seal(body))
        tampered[-TAG_SIZE - NONCE_SIZE - 1] ^= 1
        intruder.sendto(body, receiver.relay.address)  # no tag: not a worker of this cluster
        intruder.sendto(Sealer(bytes(32)).seal(body), receiver.relay.address)  # another cluster's key
        intruder.sendto(bytes(tampered), receiver.relay.address)  # altered on its way
        intruder.sendto(worker.seal(body), receiver.relay.address)
        intruder.sendto(worker.seal(b"\xa7garbage"), receiver.relay.address)
        intruder.sendto(worker.seal(encode_prefix(KIND_KEYFRAME, TRACK, "f")), source.relay.address)
        await wait_for(
            lambda: (
                receiver.counters["relay_dropped_bad_tag"] == 3
                and receiver.counters["relay_dropped_unexpected"] == 1
                and receiver.counters["relay_dropped_malformed"] == 1
                and source.counters["relay_dropped_unexpected"] == 1
            ),
            what="the drops to be counted",
        )
    finally:
        intruder.close()
    assert copy.packets_in == 0 and publisher.keyframe_requests == []
    await feed(source.ups[TRACK], 2)
    await wait_for(lambda: copy.packets_in == 2, what="relaying to go on after bad datagrams")


async def test_relay_of_an_unknown_or_relayed_track_is_refused(
    planes: tuple[MediaPlane, MediaPlane, Publisher],
) -> None:
    source, receiver, _ = planes
    with pytest.raises(NotFoundError):
        await source.relay_source("TR_unknown", HOST)
    await start_relay(source, receiver)
    with pytest.raises(NotFoundError):  # a copy is never relayed on: the publisher's worker sends every copy
        await receiver.relay_source(TRACK, HOST)
    await receiver.stop_track(TRACK)
    assert TRACK not in receiver.ups
    await feed(source.ups[TRACK], 2)
    await wait_for(
        lambda: receiver.counters["relay_dropped_unexpected"] == 2, what="copies of a stopped track dropped"
    )
