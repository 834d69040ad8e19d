"""One participant's peer connections and its data channels.

On `/rtc` (LiveKit's dual-PC model) the subscriber PC is offered by the server and carries the
server-created "_reliable" and "_lossy" channels that deliver data to the client; the publisher PC is
offered by the client, whose own channels carry the data it sends. On `/rtc/v1` (`single_pc`) there is
only the client's PC: it carries the client's tracks, data both ways on the client's channels (as LiveKit
sends it), and the down tracks (on the m-lines the client offers to receive). Remote ICE candidates that
arrive before their PC has a remote description are held.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from livekit.protocol import rtc

from actors.errors import CandidateError, NotFoundError, SdpError
from actors.media.data import DATA_LABELS, LOSSY_LABEL, RELIABLE_LABEL
from actors.media.hooks import ice_connections, restart_checks, restart_local_credentials, start_transceivers
from actors.media.ratelog import RateLimitedLog
from actors.media.sdp import check_sdp, offer_sections
from actors.tasks import spawn

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

PUBLISHER: int = rtc.SignalTarget.PUBLISHER
SUBSCRIBER: int = rtc.SignalTarget.SUBSCRIBER

MAX_PENDING_CANDIDATES = 64  # per PC, before its remote description is set
MAX_RELIABLE_BACKLOG = 256  # reliable packets held until the subscriber's "_reliable" channel opens
MAX_BUFFERED_BYTES = 4 * 1024 * 1024  # SCTP send buffer beyond which we drop instead of queueing more
ANSWER_WAIT = 10.0  # seconds a subscriber offer waits for the previous one's answer
CONNECT_WAIT = 15.0  # seconds a renegotiation waits for the subscriber PC to connect

# publisher PC with the client's offer applied -> rewrite of the answer text
RemoteHook = Callable[[RTCPeerConnection], Callable[[str], str]]

# (participant, publisher channel label, message) for every message the client sends on "_reliable"/"_lossy".
DataHandler = Callable[["ParticipantPeers", str, bytes | str], None]


class ParticipantPeers:
    def __init__(
        self,
        room: str,
        sid: str,
        identity: str,
        config: Callable[[], RTCConfiguration],
        on_data: DataHandler,
        single_pc: bool = False,
    ) -> None:
        self.room = room
        self.single_pc = single_pc
        self.sid = sid
        self.identity = identity
        self.closed = False
        self._config = config
        self._on_data = on_data
        self._pcs: dict[int, RTCPeerConnection] = {}
        self._locks = {PUBLISHER: asyncio.Lock(), SUBSCRIBER: asyncio.Lock()}
        self._remote_set: set[int] = set()
        self._pending: dict[int, list[RTCIceCandidate]] = {PUBLISHER: [], SUBSCRIBER: []}
        self._channels: dict[str, RTCDataChannel] = {}
        self._backlog: deque[bytes] = deque()
        self._answered = asyncio.Event()
        self._answered.set()
        self._settled = asyncio.Event()  # a PC connected, or the peers closed
        self.connected = False  # one of the PCs has connected (LiveKit's participant state ACTIVE)

    def __repr__(self) -> str:
        return f"peers:{self.room}/{self.identity}/{self.sid}"

    def subscriber_pc(self) -> RTCPeerConnection:
        """The subscriber PC (created with its data channels on first use)."""
        self._check_open()
        if self.single_pc:
            raise SdpError("a single peer connection has no subscriber PC")
        return self._pcs.get(SUBSCRIBER) or self._new_subscriber()

    def client_pc(self) -> RTCPeerConnection | None:
        """With one PC: that PC, once the client's first offer created it."""
        self._check_open()
        return self._pcs.get(PUBLISHER)

    def subscriber_media_sections(self) -> int:
        """The audio and video m-lines of the last subscriber offer (0 before the first); with one PC,
        those of the client's last offer that it offers to receive on."""
        if self.single_pc:
            pc = self._pcs.get(PUBLISHER)
            offer = pc.remoteDescription if pc is not None else None
            sections = offer_sections(offer.sdp) if offer is not None else []
            return sum(s.kind in ("audio", "video") and s.direction == "recvonly" for s in sections)
        pc = self._pcs.get(SUBSCRIBER)
        if pc is None or pc.localDescription is None:
            return 0
        lines: list[str] = pc.localDescription.sdp.splitlines()
        return sum(line.startswith(("m=audio", "m=video")) for line in lines)

    async def subscriber_offer(self, ice_restart: bool = False) -> str:
        """The next subscriber offer, one negotiation at a time (the SDKs fail on overlapping ones):
        wait for the previous answer, and for a renegotiation wait until the PC is connected. With
        `ice_restart` (a resumed session, as LiveKit does) the offer carries new ICE credentials, and the
        answer's restart the checks (subscriber_answer)."""
        await self._wait_answered()
        async with self._locks[SUBSCRIBER]:
            pc = self.subscriber_pc()
            if SUBSCRIBER in self._remote_set:
                await _wait_connected(pc, CONNECT_WAIT)
                if ice_restart:
                    for connection in ice_connections(pc):
                        restart_local_credentials(connection)
            try:
                await pc.setLocalDescription(await pc.createOffer())
            except Exception as e:
                self._check_open()
                raise SdpError(f"cannot create the subscriber offer: {e}") from e
            self._check_open()
            self._answered.clear()
            sdp: str = pc.localDescription.sdp
            return sdp

    async def subscriber_answer(self, sdp: str) -> None:
        async with self._locks[SUBSCRIBER]:
            pc = self._pcs.get(SUBSCRIBER)
            if pc is None:
                raise SdpError("subscriber answer before any subscriber offer")
            check_sdp(sdp)
            restarted = _restarted_credentials(pc, sdp)
            await self._set_remote(SUBSCRIBER, pc, RTCSessionDescription(sdp=sdp, type="answer"))
            if restarted is not None:
                for connection in ice_connections(pc):
                    restart_checks(connection, *restarted)
            self._answered.set()
            self._start_transceivers(pc)

    async def _wait_answered(self) -> None:
        try:
            await asyncio.wait_for(self._answered.wait(), ANSWER_WAIT)
        except TimeoutError:
            log.warning(
                "%r: previous subscriber offer unanswered after %s s; offering again", self, ANSWER_WAIT
            )

    def _start_transceivers(self, pc: RTCPeerConnection) -> None:
        """After a negotiation: once connected, run aiortc's connect step again, so that the senders and
        receivers it added start even if DTLS was still connecting when aiortc applied it."""
        spawn(self._start_when_connected(pc), f"{self!r}: starting new senders/receivers")

    async def _start_when_connected(self, pc: RTCPeerConnection) -> None:
        if await _wait_connected(pc, CONNECT_WAIT) and not self.closed:
            try:
                await start_transceivers(pc)
            except Exception as exc:
                if not self.closed:
                    log.exception("%r: starting new senders/receivers failed", self)
                else:  # the session ended meanwhile: a teardown race
                    log.info("%r: new senders/receivers not started, the session ended: %r", self, exc)

    async def publisher_offer(self, sdp: str, on_remote: RemoteHook | None = None) -> str:
        """Answer the client's offer. `on_remote(pc)` runs between applying the offer and creating the answer
        (to adopt new transceivers) and returns a function that may rewrite the answer text."""
        async with self._locks[PUBLISHER]:
            check_sdp(sdp)
            pc = self._pcs.get(PUBLISHER) or self._new_publisher()
            restarted = _restarted_credentials(pc, sdp) if PUBLISHER in self._remote_set else None
            await self._set_remote(PUBLISHER, pc, RTCSessionDescription(sdp=sdp, type="offer"))
            if restarted is not None:  # the client restarts ICE (a resume): so does the answer (JSEP 5.3.1)
                log.info("%r: the client restarts ICE on the publisher PC", self)
                for connection in ice_connections(pc):
                    restart_local_credentials(connection)
                    restart_checks(connection, *restarted)
            munge = on_remote(pc) if on_remote is not None else None
            try:
                await pc.setLocalDescription(await pc.createAnswer())
            except Exception as e:
                self._check_open()
                raise SdpError(f"cannot answer the publisher offer: {e}") from e
            self._check_open()
            answer: str = pc.localDescription.sdp
            self._start_transceivers(pc)
            if munge is not None:
                answer = munge(answer)
            return answer

    async def add_ice_candidate(self, target: int, candidate: RTCIceCandidate) -> None:
        self._check_open()
        if self.single_pc:
            target = PUBLISHER  # the SDKs may name either target; there is one PC
        pc = self._pcs.get(target)
        if pc is None or target not in self._remote_set:
            pending = self._pending[target]
            if len(pending) >= MAX_PENDING_CANDIDATES:
                log.warning(
                    "%r: dropping candidate, %d already held for target %d", self, len(pending), target
                )
                return
            pending.append(candidate)
            return
        await self._add_candidate(pc, candidate)

    def send(self, payload: bytes, reliable: bool) -> str | None:
        """Deliver on the subscriber channel; None when sent or queued, else the reason it was dropped."""
        if self.closed:
            return "closed"
        channel = self._channels.get(RELIABLE_LABEL if reliable else LOSSY_LABEL)
        if channel is None or channel.readyState != "open":
            if not reliable:
                return "lossy_not_open"
            if len(self._backlog) >= MAX_RELIABLE_BACKLOG:
                return "backlog_full"
            self._backlog.append(payload)
            return None
        if channel.bufferedAmount > MAX_BUFFERED_BYTES:
            return "congested"
        channel.send(payload)
        return None

    async def close(self) -> None:
        """Close both PCs; safe while a negotiation is under way (it then raises NotFoundError)."""
        if self.closed:
            return
        self.closed = True
        self._settled.set()
        self._backlog.clear()
        self._pending = {PUBLISHER: [], SUBSCRIBER: []}
        for pc in list(self._pcs.values()):
            try:
                await pc.close()
            except Exception as exc:  # aiortc's teardown racing a transport that already failed
                _ratelog.warning("close_failed", "%r: error closing a peer connection: %r", self, exc)

    def is_connected(self) -> bool:
        return any(pc.connectionState == "connected" for pc in self._pcs.values())

    def failed(self) -> bool:
        """One of the PCs failed or closed: ICE cannot restart on it (aioice's sockets are gone)."""
        return self.closed or any(pc.connectionState in ("failed", "closed") for pc in self._pcs.values())

    async def wait_connected(self) -> bool:
        """Until one of the PCs connects (True) or the peers close first (False)."""
        await self._settled.wait()
        return self.connected

    def _check_open(self) -> None:
        if self.closed:
            raise NotFoundError(f"participant {self.sid} was removed")

    def _new_pc(self, target: int) -> RTCPeerConnection:
        self._check_open()
        pc = RTCPeerConnection(self._config())
        name = "subscriber" if target == SUBSCRIBER else "publisher"

        @pc.on("connectionstatechange")
        def on_state() -> None:
            log.info("%r: %s PC %s", self, name, pc.connectionState)
            if pc.connectionState == "connected" and not self.closed:
                self.connected = True
                self._settled.set()

        self._pcs[target] = pc
        return pc

    def _new_subscriber(self) -> RTCPeerConnection:
        pc = self._new_pc(SUBSCRIBER)
        reliable = pc.createDataChannel(RELIABLE_LABEL, ordered=True)
        lossy = pc.createDataChannel(LOSSY_LABEL, ordered=False, maxRetransmits=0)
        reliable.on("open", self._flush_backlog)
        self._channels = {RELIABLE_LABEL: reliable, LOSSY_LABEL: lossy}
        return pc

    def _new_publisher(self) -> RTCPeerConnection:
        pc = self._new_pc(PUBLISHER)

        @pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            label: str = channel.label
            if label not in DATA_LABELS:
                return  # "_data_track" and anything else: not data packets
            if self.single_pc:
                # With one PC, data for the client goes back on its own channels, as LiveKit sends it
                # (livekit-client 2.23.0 listens for no channel of ours there).
                self._channels[label] = channel
                if label == RELIABLE_LABEL:
                    if channel.readyState == "open":
                        self._flush_backlog()
                    else:
                        channel.on("open", self._flush_backlog)

            @channel.on("message")
            def on_message(message: bytes | str) -> None:
                self._on_data(self, label, message)

        return pc

    async def _set_remote(
        self, target: int, pc: RTCPeerConnection, description: RTCSessionDescription
    ) -> None:
        self._check_open()
        try:
            await pc.setRemoteDescription(description)
        except Exception as e:
            self._check_open()
            raise SdpError(f"cannot apply the {description.type}: {e}") from e
        self._check_open()
        self._remote_set.add(target)
        pending, self._pending[target] = self._pending[target], []
        for candidate in pending:
            try:
                await self._add_candidate(pc, candidate)
            except CandidateError as e:
                log.warning("%r: buffered candidate refused: %s", self, e)

    async def _add_candidate(self, pc: RTCPeerConnection, candidate: RTCIceCandidate) -> None:
        try:
            await pc.addIceCandidate(candidate)
        except Exception as e:
            self._check_open()
            raise CandidateError(f"cannot add candidate: {e}") from e

    def _flush_backlog(self) -> None:
        backlog, self._backlog = self._backlog, deque()
        dropped = [reason for payload in backlog if (reason := self.send(payload, reliable=True)) is not None]
        if dropped:
            log.warning("%r: %d queued reliable packets dropped (%s)", self, len(dropped), dropped[0])


def _restarted_credentials(pc: RTCPeerConnection, sdp: str) -> tuple[str, str] | None:
    """The remote description's ICE ufrag and password when they differ from those `pc`'s ICE is checking
    with (the remote side restarted ICE); None when they are the same, or ICE has none yet."""
    try:
        media = aiortc_sdp.SessionDescription.parse(sdp).media
    except Exception:  # aiortc's parser asserts as well; setRemoteDescription refuses it then
        return None
    ice = media[0].ice if media else None
    current = {c.remote_username for c in ice_connections(pc)}
    if ice is None or not ice.usernameFragment or not ice.password or current in (set(), {None}):
        return None
    if current == {ice.usernameFragment}:
        return None
    return ice.usernameFragment, ice.password


async def _wait_connected(pc: RTCPeerConnection, limit: float) -> bool:
    """Wait until `pc` is connected; False if it closed, failed or timed out first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while pc.connectionState != "connected":
        if pc.connectionState in ("closed", "failed") or loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
