"""Every use of aiortc / aioice internals by the media plane (pinned aiortc==1.16.0, aioice==0.13.0).

aiortc has no passthrough API, so the SFU swaps the class of three of its objects (per object, so that
ordinary aiortc peers in the same process, e.g. test clients, keep decoding and encoding):
- TapDtlsTransport (RTCDtlsTransport): `_handle_rtp_data` keeps the decrypted RAW bytes, routes by MID when
  SSRC/PT routing fails, admits only SSRCs its tap receiver accepts, and counts what it drops; it and
  `_handle_rtcp_data` keep a handler's exception from closing the transport. Uses `_rtp_router` (route_rtp,
  route_rtcp, mid_table, ssrc_table) and `_rtp_header_extensions_map`.
- TapReceiver (RTCRtpReceiver): `receive()` starts no decoder thread; `_handle_rtp_packet` keeps RR
  statistics, unwraps RTX, NACKs per SSRC, learns ssrc -> rid, and hands raw bytes to its sink. Uses the
  name-mangled `_RTCRtpReceiver__started/__codecs/__rtx_ssrc/__rtcp_task/__remote_streams/__rtcp_ssrc/
  __nack_generator`, `_run_rtcp`, `_send_rtcp`, `_send_rtcp_pli`, `_send_rtcp_nack`, `_enabled`,
  `transport._register_rtp_receiver`.
- PassthroughSender (RTCRtpSender): no encoder; `write_rtp(raw)` sends rewritten bytes with `send_rtp` (what
  `RTCDtlsTransport._send_rtp` does, without its four awaits: `_state`, `_tx_srtp`,
  `_RTCDtlsTransport__tx_bytes/__tx_packets`, the ICE transport's `_connection._nominated` pair's `protocol.
  transport` and `remote_addr`) and keeps `_RTCRtpSender__ntp_timestamp/__rtp_timestamp/__packet_count/
  __octet_count` true for its sender reports; `_run_rtp` replaced (sets `_RTCRtpSender__rtp_started/
  __rtp_exited`); `_handle_rtcp_packet` serves NACKs from its own history (RTX with `_rtx_ssrc`) and passes
  PLI/FIR and REMB to its listener. Uses `_ssrc`, `_stream_id`, `_track_id`.
Also: `RTCRtpTransceiver._codecs/_headerExtensions` (negotiated parameters, rid extension patch),
`RTCPeerConnection._RTCPeerConnection__connect` (starts senders added by a renegotiation),
`RTCPeerConnection._RTCPeerConnection__sctp._bundled` (fix_sctp_bundle),
`aiortc.rtp.DYNAMIC_PAYLOAD_TYPES` and `aiortc.codecs.CODECS` (install()), `aioice.ice.Connection.
data_received` and its `_queue` (bounded by install()).
tests/unit/test_hooks.py checks each of these names so that an aiortc upgrade fails loudly.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aioice.ice
import aiortc.codecs
import aiortc.rtp
from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from actors.media import rtp
from actors.media.codecs import DYNAMIC_PAYLOAD_TYPES, EXTRA_VIDEO_CODECS
from actors.media.ratelog import RateLimitedLog
from actors.media.rtcp import NackTracker

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

MAX_ICE_QUEUE = 2048  # datagrams waiting in one aioice connection before we drop (aioice's is unbounded)
MAX_LEARNED_SSRCS = 16  # unsignalled SSRCs one tap receiver adopts (3 simulcast layers + RTX, with margin)
SENDER_HISTORY = 1024  # packets a passthrough sender keeps for NACKs (a power of two)

# Process-wide drop counters of the hooks (the worker adds them to its stats).
counters: Counter[str] = Counter()


class RtpSink(Protocol):
    """Where a tap receiver delivers decrypted, RTX-unwrapped RTP (raw bytes, header parsed)."""

    async def on_rtp(self, raw: bytes, header: rtp.RtpHeader, rid: str | None) -> None: ...


# ----- process-wide set-up ---------------------------------------------------------------------------------

_installed = False


def install() -> None:
    """Process-wide patches (idempotent): PTs 35-63, VP9/AV1/H264 codec entries, bounded ICE queues."""
    global _installed
    if _installed:
        return
    _installed = True
    # libwebrtc numbers AV1/H264 variants 35-63; aiortc keeping its own PT there duplicates a PT in the
    # answer, and the Rust SDK aborts on "Duplicate payload type".
    aiortc.rtp.DYNAMIC_PAYLOAD_TYPES = DYNAMIC_PAYLOAD_TYPES  # type: ignore[assignment]
    video = aiortc.codecs.CODECS["video"]
    feedback = [
        RTCRtcpFeedback(type="nack"),
        RTCRtcpFeedback(type="nack", parameter="pli"),
        RTCRtcpFeedback(type="goog-remb"),
    ]
    taken = {c.payloadType for c in video}
    for entry in EXTRA_VIDEO_CODECS:
        if entry.payload_type in taken:
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType=entry.mime_type,
                clockRate=90000,
                payloadType=entry.payload_type,
                rtcpFeedback=list(feedback),
                parameters=dict(entry.parameters),
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=90000,
                payloadType=entry.payload_type + 1,
                parameters={"apt": entry.payload_type},
            )
        )
    aioice.ice.Connection.data_received = _bounded_data_received  # type: ignore[method-assign]


def _bounded_data_received(self: Any, data: bytes, component: int) -> None:
    queue: asyncio.Queue[Any] = self._queue
    if queue.qsize() >= MAX_ICE_QUEUE:
        counters["dropped_ice_queue_full"] += 1
        _ratelog.warning("ice_queue", "ICE receive queue full (%d): dropping datagrams", MAX_ICE_QUEUE)
        return
    queue.put_nowait((data, component))


# ----- transceivers and peer connections -------------------------------------------------------------------


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    return codecs


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    return {e.uri: e.id for e in transceiver._headerExtensions}


def add_header_extensions(transceiver: RTCRtpTransceiver, extensions: dict[str, int]) -> None:
    """Negotiate extra header extensions on this m-line (after setRemoteDescription, before the answer)."""
    present = {e.uri for e in transceiver._headerExtensions}
    for uri, ext_id in extensions.items():
        if uri not in present:
            transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))


async def start_senders(pc: RTCPeerConnection) -> None:
    """Run aiortc's connect step again: it starts senders only when DTLS is connected at that moment."""
    connect: Callable[[], Awaitable[None]] = getattr(pc, "_RTCPeerConnection__connect")  # noqa: B009
    await connect()


def fix_sctp_bundle(pc: RTCPeerConnection) -> None:
    """aiortc bug: with max-bundle, a transceiver added after the data channels shares the SCTP transport,
    but the SCTP transport is still marked unbundled, so applying a BUNDLE answer whose first mid is the
    transceiver's stops the shared (primary) transport and ICE never connects. Mark it bundled."""
    sctp = getattr(pc, "_RTCPeerConnection__sctp")  # noqa: B009
    if sctp is None or sctp._bundled:
        return
    if any(t.receiver.transport is sctp.transport for t in pc.getTransceivers()):
        sctp._bundled = True


def label_sender(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """The msid ("stream track") the next offer announces for this sender."""
    sender._stream_id = stream_id
    sender._track_id = track_id


def sender_ssrc(sender: RTCRtpSender) -> int:
    ssrc: int = sender._ssrc
    return ssrc


# ----- DTLS transport tap ----------------------------------------------------------------------------------


class TapDtlsTransport(RTCDtlsTransport):
    """Keeps the raw decrypted bytes on the parsed packet (`packet.raw`), routes by MID as a fallback, admits
    only SSRCs its tap receivers accept, and never lets a bad packet end the transport: aiortc's receive loop
    closes the DTLS transport (the publisher's whole PC) on any exception out of these handlers."""

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        try:
            packet = RtpPacket.parse(data, self._rtp_header_extensions_map)
        except ValueError:
            counters["dropped_malformed_rtp"] += 1
            _ratelog.warning("malformed_rtp", "malformed RTP dropped (%d bytes)", len(data))
            return
        packet.raw = data  # type: ignore[attr-defined]
        router = self._rtp_router
        known = router.ssrc_table.get(packet.ssrc)
        receiver = router.route_rtp(packet)  # learns an unknown SSRC when its payload type is unique
        if receiver is None and packet.extensions.mid is not None:
            receiver = router.mid_table.get(packet.extensions.mid)
            if receiver is not None:
                router.ssrc_table[packet.ssrc] = receiver
        if receiver is not None and receiver is not known:
            if isinstance(receiver, TapReceiver) and not receiver.admit(packet.ssrc):
                receiver = None
            if receiver is None:  # forget it again: the table must not grow with every SSRC an attacker sends
                if known is None:
                    router.ssrc_table.pop(packet.ssrc, None)
                else:
                    router.ssrc_table[packet.ssrc] = known
        if receiver is None:
            counters["dropped_unknown_ssrc"] += 1
            _ratelog.warning("unknown_ssrc", "RTP from unknown SSRC %d dropped", packet.ssrc)
            return
        try:
            await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)
        except Exception as e:  # a bug, not bad input: count and log it, keep the PC
            counters["rtp_handler_errors"] += 1
            _ratelog.warning("rtp_handler", "RTP packet (SSRC %d) dropped on an error: %r", packet.ssrc, e)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            counters["dropped_malformed_rtcp"] += 1
            _ratelog.warning("malformed_rtcp", "malformed RTCP dropped (%d bytes)", len(data))
            return
        for packet in packets:
            for recipient in self._rtp_router.route_rtcp(packet):
                try:
                    await recipient._handle_rtcp_packet(packet)
                except Exception as e:
                    counters["rtcp_handler_errors"] += 1
                    _ratelog.warning(
                        "rtcp_handler", "RTCP %s dropped on an error: %r", type(packet).__name__, e
                    )


def tap_transport(transport: RTCDtlsTransport) -> None:
    if not isinstance(transport, TapDtlsTransport):
        transport.__class__ = TapDtlsTransport


# ----- receiving: the tap receiver -------------------------------------------------------------------------


class TapReceiver(RTCRtpReceiver):
    """A receiver with no decoder: RR statistics, RTX unwrap, per-SSRC NACKs, rid learning, then `sink`."""

    # aiortc's private fields (name-mangled), declared for the type checker
    _RTCRtpReceiver__remote_streams: dict[int, StreamStatistics]
    _RTCRtpReceiver__started: bool
    _RTCRtpReceiver__codecs: dict[int, RTCRtpCodecParameters]
    _RTCRtpReceiver__nack_generator: object | None
    _RTCRtpReceiver__rtx_ssrc: dict[int, int]
    _RTCRtpReceiver__rtcp_ssrc: int | None
    sink: RtpSink | None
    rid_ssrc: dict[str, int]
    ssrc_rid: dict[int, str]
    params: RTCRtpReceiveParameters | None

    def _tap_init(self) -> None:
        self.sink = None
        self.params = None
        self.rid_ssrc = {}
        self.ssrc_rid = {}
        self._rtx_rid: dict[int, str] = {}
        self._nacks: dict[int, NackTracker] = {}
        self._rid_id: int | None = None
        self._rrid_id: int | None = None
        self.counters: Counter[str] = Counter()
        self._learned: set[int] = set()

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        if self._RTCRtpReceiver__started:
            return
        codecs = self._RTCRtpReceiver__codecs
        for codec in parameters.codecs:
            if codec.payloadType is not None:
                codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                self._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        extensions = {e.uri: e.id for e in parameters.headerExtensions}
        self._rid_id = extensions.get(rtp.RID_URI)
        self._rrid_id = extensions.get(rtp.REPAIRED_RID_URI)
        self.params = parameters
        self.transport._register_rtp_receiver(self, parameters)
        self._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(self._run_rtcp())
        self._RTCRtpReceiver__started = True

    async def _handle_rtp_packet(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        if not self._enabled:
            return
        codec = self._RTCRtpReceiver__codecs.get(packet.payload_type)
        raw: bytes | None = getattr(packet, "raw", None)
        if codec is None or raw is None:
            self.counters["dropped_unknown_pt"] += 1
            return
        try:
            header = rtp.parse_header(raw)
            extensions = rtp.read_extensions(raw, header) if self._rid_id or self._rrid_id else {}
        except rtp.RtpError:
            counters["dropped_malformed_rtp"] += 1
            return
        streams: dict[int, StreamStatistics] = self._RTCRtpReceiver__remote_streams
        stats = streams.get(packet.ssrc)
        if stats is None:
            if len(streams) >= MAX_LEARNED_SSRCS:  # a publisher m-line carries at most 3 layers (+ RTX)
                self.counters["dropped_too_many_ssrcs"] += 1
                return
            stats = streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stats.add(packet)
        if is_rtx(codec):
            repaired = extensions.get(self._rrid_id) if self._rrid_id else None
            if repaired:
                self._rtx_rid[packet.ssrc] = repaired.decode(errors="replace")
            unwrapped = self._unwrap_rtx(raw, header, codec, packet.ssrc)
            if unwrapped is None:
                return
            raw = unwrapped
            header = rtp.parse_header(raw)
            self.counters["rtx_in"] += 1
        else:
            rid_value = extensions.get(self._rid_id) if self._rid_id else None
            if rid_value and header.ssrc not in self.ssrc_rid:
                rid = rid_value.decode(errors="replace")
                self.ssrc_rid[header.ssrc] = rid
                self.rid_ssrc[rid] = header.ssrc
        if self._RTCRtpReceiver__nack_generator is not None:  # video
            tracker = self._nacks.get(header.ssrc)
            if tracker is None:
                tracker = self._nacks[header.ssrc] = NackTracker()
            if tracker.add(header.sequence_number):
                self.counters["nacks_sent"] += 1
                await self._send_rtcp_nack(header.ssrc, tracker.missing_list())
        if self.sink is not None:
            await self.sink.on_rtp(raw, header, self.ssrc_rid.get(header.ssrc))

    def admit(self, ssrc: int) -> bool:
        """Whether an SSRC not yet routed here may be: a signalled one (a=ssrc) always; when the publisher
        signalled none (rid simulcast), up to MAX_LEARNED_SSRCS learned ones."""
        params = self.params
        if params is None:
            return False
        signalled: set[int] = set()
        for encoding in params.encodings:
            if encoding.ssrc:
                signalled.add(encoding.ssrc)
            if encoding.rtx and encoding.rtx.ssrc:
                signalled.add(encoding.rtx.ssrc)
        if signalled:
            return ssrc in signalled
        if ssrc in self._learned:
            return True
        if len(self._learned) >= MAX_LEARNED_SSRCS:
            return False
        self._learned.add(ssrc)
        return True

    def _unwrap_rtx(
        self, raw: bytes, header: rtp.RtpHeader, codec: RTCRtpCodecParameters, ssrc: int
    ) -> bytes | None:
        original = self._RTCRtpReceiver__rtx_ssrc.get(ssrc)
        if original is None and ssrc in self._rtx_rid:
            original = self.rid_ssrc.get(self._rtx_rid[ssrc])
        apt = codec.parameters.get("apt")
        if original is None or not isinstance(apt, int) or header.payload_length < 2:
            self.counters["dropped_rtx"] += 1  # includes padding-only probes on the RTX stream
            return None
        return rtp.rtx_unwrap(raw, header, apt, original)

    async def send_pli(self, media_ssrc: int) -> None:
        await self._send_rtcp_pli(media_ssrc)

    async def send_remb(self, bitrate: int, ssrcs: list[int]) -> None:
        rtcp_ssrc = self._RTCRtpReceiver__rtcp_ssrc
        if rtcp_ssrc is None or not ssrcs:
            return
        await self._send_rtcp(
            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs))
        )

    def media_ssrcs(self) -> list[int]:
        """SSRCs of media (not RTX) seen so far."""
        rtx = set(self._RTCRtpReceiver__rtx_ssrc) | set(self._rtx_rid)
        return [s for s in self._RTCRtpReceiver__remote_streams if s not in rtx]


def tap_receiver(receiver: RTCRtpReceiver) -> TapReceiver:
    """Turn a (not yet started) aiortc receiver into a tap receiver."""
    if not isinstance(receiver, TapReceiver):
        receiver.__class__ = TapReceiver
        assert isinstance(receiver, TapReceiver)
        receiver._tap_init()
    return receiver


# ----- sending: the passthrough sender ---------------------------------------------------------------------


class SenderListener(Protocol):
    async def on_keyframe_request(self) -> None: ...

    def on_remb(self, bitrate: int) -> None: ...


class PassthroughSender(RTCRtpSender):
    """Sends already-rewritten RTP; serves NACKs from its own history; reports PLI/FIR and REMB."""

    _RTCRtpSender__rtp_started: asyncio.Event
    _RTCRtpSender__rtp_exited: asyncio.Event
    _RTCRtpSender__packet_count: int
    _RTCRtpSender__octet_count: int
    listener: SenderListener | None
    params: RTCRtpSendParameters | None

    def _passthrough_init(self) -> None:
        self.listener = None
        self.params = None
        self.params_version = 0
        self.rtx_pt: int | None = None
        self.history: list[bytes | None] = [None] * SENDER_HISTORY
        self.rtx_seq = 0
        # The outgoing stream position, kept across down tracks so seq/ts stay continuous on this SSRC.
        self.last_seq: int | None = None
        self.last_ts: int | None = None
        self.last_time = 0.0
        self.remb_bps: int | None = None
        self.counters: Counter[str] = Counter()

    async def send(self, parameters: RTCRtpSendParameters) -> None:
        self.rtx_pt = None
        if parameters.codecs:
            for codec in parameters.codecs:
                if is_rtx(codec) and codec.parameters.get("apt") == parameters.codecs[0].payloadType:
                    self.rtx_pt = codec.payloadType
        self.params = parameters
        self.params_version += 1
        await super().send(parameters)

    async def _run_rtp(self, codec: RTCRtpCodecParameters) -> None:
        self._RTCRtpSender__rtp_started.set()
        try:
            await asyncio.Future()
        except asyncio.CancelledError:
            pass
        self._RTCRtpSender__rtp_exited.set()

    @property
    def ssrc(self) -> int:
        ssrc: int = self._ssrc
        return ssrc

    @property
    def running(self) -> bool:
        return self.params is not None and bool(self._enabled)

    async def write_rtp(self, data: bytes, sequence_number: int, timestamp: int, payload_length: int) -> bool:
        """Send one rewritten packet (SRTP protect + ICE); False when the transport is not connected."""
        self.history[sequence_number % SENDER_HISTORY] = data
        self._RTCRtpSender__ntp_timestamp = rtp.ntp_time()
        self._RTCRtpSender__rtp_timestamp = timestamp
        self._RTCRtpSender__packet_count += 1
        self._RTCRtpSender__octet_count += payload_length
        try:
            await send_rtp(self.transport, data)
        except ConnectionError:
            self.counters["send_errors"] += 1
            return False
        return True

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.counters["pli_received"] += 1
            if self.listener is not None:
                await self.listener.on_keyframe_request()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.counters["nack_received"] += 1
            for seq in packet.lost:
                await self._resend(seq & 0xFFFF)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self._ssrc in ssrcs:
                self.remb_bps = bitrate
                if self.listener is not None:
                    self.listener.on_remb(bitrate)
        else:
            await super()._handle_rtcp_packet(packet)  # receiver reports: RTT and remote stats

    async def _resend(self, seq: int) -> None:
        data = self.history[seq % SENDER_HISTORY]
        if data is None:
            return
        header = rtp.parse_header(data)
        if header.sequence_number != seq:
            return
        if self.rtx_pt is not None:
            data = rtp.rtx_wrap(data, header, self.rtx_pt, self.rtx_seq, self._rtx_ssrc)
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        self.counters["nack_served"] += 1
        try:
            await send_rtp(self.transport, data)
        except ConnectionError:
            self.counters["send_errors"] += 1


async def send_rtp(dtls: RTCDtlsTransport, data: bytes) -> None:
    """SRTP-protect one RTP packet and send it: aiortc's `RTCDtlsTransport._send_rtp`, which goes through
    four coroutines (DTLS, ICE transport, aioice connection, STUN protocol) per packet, with the datagram
    handed straight to the nominated pair's socket when that is a plain UDP pair (a TURN pair keeps aioice's
    path). ConnectionError when not connected, as aiortc."""
    if dtls._state != State.CONNECTED:
        raise ConnectionError("Cannot send encrypted RTP, not connected")
    protected = dtls._tx_srtp.protect(data)
    pair = dtls.transport._connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("Cannot send data, not connected")
    protocol = pair.protocol
    if type(protocol) is aioice.ice.StunProtocol:
        if protocol.transport is None or protocol.transport.is_closing():
            raise ConnectionError("ICE socket closed")
        protocol.transport.sendto(protected, pair.remote_addr)
    else:
        await protocol.send_data(protected, pair.remote_addr)
    dtls._RTCDtlsTransport__tx_bytes += len(protected)  # type: ignore[attr-defined]
    dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]


def passthrough_sender(sender: RTCRtpSender) -> PassthroughSender:
    """Turn a (not yet started) aiortc sender into a passthrough sender."""
    if not isinstance(sender, PassthroughSender):
        sender.__class__ = PassthroughSender
        assert isinstance(sender, PassthroughSender)
        sender._passthrough_init()
    return sender


KeyframeRequest = Callable[[], Awaitable[None]]
