"""Media between MediaWorkers: one UDP copy of each published track per receiving worker.

The publisher's worker sends every RTP packet of a track (decrypted, RTX-unwrapped: what its tap receiver
hands the up track) once to each worker that has subscribers of the track; that worker feeds the copy into
its own up track, which fans out to its local subscribers exactly as on the publisher's worker. Keyframe
requests travel back the same way. No Ray call per packet.

Datagram: MAGIC, kind, len(track sid), track sid, len(rid), rid, then for KIND_RTP the RTP packet (nothing
for KIND_KEYFRAME), then a NONCE_SIZE-byte nonce and the TAG_SIZE-byte AES-GCM tag of all that (GMAC: the
datagram is the authenticated data, nothing is encrypted) under the cluster's relay key. One socket
per worker both sends and receives, so a receiver knows the address its copy of a track comes from and
accepts that track's packets from that address only. A datagram whose tag does not verify (not from a
worker of this cluster, or altered on its way) is dropped and counted before anything else is read from
it. The copies are authenticated, not encrypted: they travel between the cluster's nodes like Ray's own
traffic, and on a dev server over loopback.

The key is made by the first worker of the cluster and kept in Ray's GCS key-value store
(`cluster_relay_key`); every worker reads it from there. It is never logged.
"""

import asyncio
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from ray.experimental import internal_kv

from actors.media import rtp
from actors.media.ratelog import RateLimitedLog
from actors.media.uptrack import UpTrack
from actors.naming import NAMESPACE

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

MAGIC = 0xA7
KIND_RTP = 1
KIND_KEYFRAME = 2
SOCKET_BUFFER = 4 * 1024 * 1024  # bytes asked of the kernel for each direction (capped by rmem/wmem_max)
MAX_RECEIVE_QUEUE = 4096  # received datagrams waiting for the up tracks before new ones are dropped
NONCE_SIZE = 12  # bytes of the nonce before the tag: a sender's random 8-byte prefix and a 4-byte counter
TAG_SIZE = 16  # bytes of the AES-GCM tag at the end of every datagram
KEY_SIZE = 32
_KEY_NAME = b"relay_key"

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Datagram:
    kind: int
    track_sid: str
    rid: str | None
    payload: bytes


class RelayError(ValueError):
    """Bytes that are not a relay datagram."""


def cluster_relay_key() -> bytes:
    """The cluster's relay key: made by whichever worker asks first (an atomic put-if-absent in Ray's GCS
    key-value store), then read by every worker. Needs a connected Ray (a worker's process)."""
    internal_kv._internal_kv_put(_KEY_NAME, os.urandom(KEY_SIZE), overwrite=False, namespace=NAMESPACE)
    key = internal_kv._internal_kv_get(_KEY_NAME, namespace=NAMESPACE)
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise RuntimeError("the cluster's relay key could not be read from Ray's key-value store")
    return key


class Sealer:
    """Seals datagrams with the cluster's key and checks those it receives (AES-GCM as a MAC: GMAC).

    A nonce must never repeat under one key: each Sealer draws a random 8-byte prefix (another worker
    sharing it is a 1 in 2^64 chance per pair) and counts 2^32 datagrams under it before drawing a new one.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a relay key has {KEY_SIZE} bytes")
        self._aead = AESGCM(key)
        self._prefix = os.urandom(8)
        self._count = 0

    def seal(self, body: bytes) -> bytes:
        """`body`, its nonce and its tag."""
        if self._count == 1 << 32:
            self._prefix, self._count = os.urandom(8), 0
        nonce = self._prefix + self._count.to_bytes(4, "big")
        self._count += 1
        return body + nonce + self._aead.encrypt(nonce, b"", body)

    def unseal(self, data: bytes) -> bytes | None:
        """The body of a sealed datagram; None when its tag does not verify."""
        if len(data) <= NONCE_SIZE + TAG_SIZE:
            return None
        body, nonce, tag = (
            data[: -NONCE_SIZE - TAG_SIZE],
            data[-NONCE_SIZE - TAG_SIZE : -TAG_SIZE],
            data[-TAG_SIZE:],
        )
        try:
            self._aead.decrypt(nonce, tag, body)
        except InvalidTag:
            return None
        return body


def encode_prefix(kind: int, track_sid: str, rid: str | None) -> bytes:
    sid = track_sid.encode()
    tag = (rid or "").encode()
    if len(sid) > 255 or len(tag) > 255:
        raise RelayError("track sid or rid longer than 255 bytes")
    return bytes((MAGIC, kind, len(sid))) + sid + bytes((len(tag),)) + tag


def decode(data: bytes) -> Datagram:
    if len(data) < 4 or data[0] != MAGIC or data[1] not in (KIND_RTP, KIND_KEYFRAME):
        raise RelayError("not a relay datagram")
    sid_end = 3 + data[2]
    if sid_end >= len(data):
        raise RelayError("truncated track sid")
    rid_end = sid_end + 1 + data[sid_end]
    if rid_end > len(data):
        raise RelayError("truncated rid")
    try:
        track_sid = data[3:sid_end].decode()
        rid = data[sid_end + 1 : rid_end].decode() or None
    except UnicodeDecodeError as e:
        raise RelayError("track sid or rid is not UTF-8") from e
    return Datagram(data[1], track_sid, rid, data[rid_end:])


class RelayOut:
    """The copies of one local up track to other workers: the up track's relay sink."""

    def __init__(self, track_sid: str, socket: "RelaySocket") -> None:
        self._track_sid = track_sid
        self._socket = socket
        self._targets: dict[str, Address] = {}  # worker name -> its relay address
        self._prefixes: dict[str | None, bytes] = {}
        self._packets: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()

    def add(self, worker: str, address: Address) -> None:
        self._targets[worker] = address

    def remove(self, worker: str) -> None:
        self._targets.pop(worker, None)

    def sends_to(self, address: Address) -> bool:
        return address in self._targets.values()

    def __bool__(self) -> bool:
        return bool(self._targets)

    def send(self, raw: bytes, rid: str | None) -> None:
        prefix = self._prefixes.get(rid)
        if prefix is None:
            prefix = self._prefixes[rid] = encode_prefix(KIND_RTP, self._track_sid, rid)
        data = self._socket.seal(prefix + raw)  # one tag per packet, whatever the number of targets
        for worker, address in self._targets.items():
            if self._socket.send(data, address):
                self._packets[worker] += 1
            else:
                self._dropped[worker] += 1

    def stats(self) -> dict[str, dict[str, int]]:
        return {w: {"packets": self._packets[w], "dropped": self._dropped[w]} for w in self._targets}


@dataclass
class _Incoming:
    up: UpTrack
    source: Address


# (track sid, rid, source address) -> a keyframe request for that local up track, if it relays there
KeyframeRequestSink = Callable[[str, str | None, Address], None]


class RelaySocket(asyncio.DatagramProtocol):
    """The worker's relay endpoint: sends copies and keyframe requests, receives and dispatches both."""

    @property
    def incoming_tracks(self) -> int:
        """Tracks this worker receives from other workers (relayed copies)."""
        return len(self._incoming)

    def __init__(self, counters: Counter[str], on_keyframe_request: KeyframeRequestSink, key: bytes) -> None:
        self._sealer = Sealer(key)
        self._counters = counters
        self._on_keyframe_request = on_keyframe_request
        self._transport: asyncio.DatagramTransport | None = None
        self._paused = False  # asyncio's write buffer is above its high-water mark: drop, do not queue
        self._incoming: dict[str, _Incoming] = {}
        self._queue: asyncio.Queue[tuple[UpTrack, bytes, rtp.RtpHeader, str | None]] = asyncio.Queue(
            MAX_RECEIVE_QUEUE
        )
        self._consumer: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self.address: Address | None = None

    async def open(self, host: str) -> Address:
        """Bind (once) on `host`, an ephemeral port; returns the address other workers send to."""
        async with self._opening:
            if self.address is None:
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(host, 0))
                sock = transport.get_extra_info("socket")
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
                bound = transport.get_extra_info("sockname")
                self.address = (bound[0], bound[1])
                self._consumer = loop.create_task(self._consume(), name="relay-in")
                log.info("relay socket on %s:%d", *self.address)
        return self.address

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        if self._consumer is not None:
            self._consumer.cancel()

    # ----- receiving side registrations -----

    def expect(self, up: UpTrack, source: Address) -> None:
        self._incoming[up.track_sid] = _Incoming(up, source)

    def forget(self, track_sid: str) -> None:
        self._incoming.pop(track_sid, None)

    # ----- sending -----

    def seal(self, body: bytes) -> bytes:
        return self._sealer.seal(body)

    def send(self, data: bytes, address: Address) -> bool:
        """Send a sealed datagram without blocking; False (counted) when the socket is closed or its
        backlog is full."""
        transport = self._transport
        if transport is None or transport.is_closing():
            self._counters["relay_dropped_closed"] += 1
            return False
        if self._paused:
            self._counters["relay_dropped_backlog"] += 1
            _ratelog.warning("backlog", "relay send backlog full, dropping copies")
            return False
        transport.sendto(data, address)
        return True

    def request_keyframe(self, track_sid: str, rid: str | None, source: Address) -> None:
        self.send(self.seal(encode_prefix(KIND_KEYFRAME, track_sid, rid)), source)

    # ----- asyncio.DatagramProtocol -----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def error_received(self, exc: Exception) -> None:
        self._counters["relay_socket_errors"] += 1
        _ratelog.warning("socket", "relay socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        source: Address = (str(addr[0]), addr[1])
        body = self._sealer.unseal(data)
        if body is None:
            self._drop("bad_tag", f"relay datagram from {source} dropped: its tag does not verify")
            return
        try:
            datagram = decode(body)
        except RelayError as e:
            self._drop("malformed", f"relay datagram from {source} dropped: {e}")
            return
        if datagram.kind == KIND_KEYFRAME:
            self._on_keyframe_request(datagram.track_sid, datagram.rid, source)
            return
        incoming = self._incoming.get(datagram.track_sid)
        if incoming is None or incoming.source != source:
            self._drop("unexpected", f"relay RTP for {datagram.track_sid} from {source} not expected")
            return
        try:
            header = rtp.parse_header(datagram.payload)
        except rtp.RtpError as e:
            self._drop("malformed", f"relayed RTP from {source} dropped: {e}")
            return
        try:
            self._queue.put_nowait((incoming.up, datagram.payload, header, datagram.rid))
        except asyncio.QueueFull:
            self._drop("queue_full", "relay receive queue full")

    def _drop(self, reason: str, message: str) -> None:
        self._counters[f"relay_dropped_{reason}"] += 1
        _ratelog.warning(reason, "%s", message)

    async def _consume(self) -> None:
        while True:
            up, raw, header, rid = await self._queue.get()
            if up.closed:
                continue
            try:
                up.deliver(raw, header, rid)
            except Exception as e:  # a bug, not bad input: count it and keep relaying
                self._counters["relay_handler_errors"] += 1
                _ratelog.warning("handler", "relayed RTP for %s dropped on an error: %r", up.track_sid, e)
