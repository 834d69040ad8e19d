"""Every use of aiortc / aioice / pylibsrtp internals by the media plane (pinned aiortc==1.16.0,
aioice==0.13.0, pylibsrtp==1.0.0).

aiortc has no passthrough API, so the SFU swaps the class of three of its objects (per object, so that
ordinary aiortc peers in the same process, e.g. test clients, keep decoding and encoding):
- TapDtlsTransport (RTCDtlsTransport): keeps the decrypted RAW bytes, routes by MID when SSRC/PT routing
  fails, admits only SSRCs its tap receiver accepts, and counts what it drops; `_handle_rtp_data` and
  `_handle_rtcp_data` keep a handler's exception from closing the transport. Uses `_rtp_router` (route_rtp,
  route_rtcp, mid_table, ssrc_table) and `_rtp_header_extensions_map`. The hot path, `_receive_srtp`, takes
  an SRTP packet straight from the ICE connection's datagram callback (no queue, no task switch: what
  `_recv_next` does for it, with `_state`, `_rx_srtp`, `_RTCDtlsTransport__rx_bytes/__rx_packets`) and
  gives a packet of a known SSRC to its tap receiver without aiortc's `RtpPacket.parse`.
- TapReceiver (RTCRtpReceiver): `receive()` starts no decoder thread; `_tap_rtp` keeps RR statistics
  (`StreamStatistics.add` reads only the sequence number and timestamp, so it takes our parsed header),
  unwraps RTX, NACKs per SSRC, learns ssrc -> rid, and hands raw bytes to its sink. Uses the name-mangled
  `_RTCRtpReceiver__started/__codecs/__rtx_ssrc/__rtcp_task/__remote_streams/__rtcp_ssrc/__nack_generator`,
  `_run_rtcp`, `_send_rtcp`, `_send_rtcp_pli`, `_send_rtcp_nack`, `_enabled`,
  `transport._register_rtp_receiver`.
- PassthroughSender (RTCRtpSender): no encoder; `send_now` sends rewritten bytes through its Egress: what
  `RTCDtlsTransport._send_rtp` does, without its four awaits (`_state`, `_tx_srtp` and its libsrtp session
  `_srtp`, called through pylibsrtp's cffi `_binding`, `_RTCDtlsTransport__tx_bytes/__tx_packets`, the ICE
  transport's `_connection._nominated` pair's `protocol.transport`, that asyncio transport's `_sock`, and
  `remote_addr`), and keeps `_RTCRtpSender__ntp_timestamp/__rtp_timestamp/__packet_count/__octet_count`
  true for its sender reports; `_run_rtp` replaced (sets `_RTCRtpSender__rtp_started/__rtp_exited`);
  `_handle_rtcp_packet` serves NACKs from its own history (RTX with `_rtx_ssrc`) and passes PLI/FIR and
  REMB to its listener. Uses `_ssrc`, `_stream_id`, `_track_id`.
Also: `RTCRtpTransceiver._codecs/_headerExtensions` (negotiated parameters, rid extension patch),
`RTCPeerConnection._RTCPeerConnection__connect` (starts senders added by a renegotiation),
`RTCPeerConnection._RTCPeerConnection__sctp._bundled` (fix_sctp_bundle),
`aiortc.rtp.DYNAMIC_PAYLOAD_TYPES` and `aiortc.codecs.CODECS` (install()), `aioice.ice.Connection.
data_received` and its `_queue` (bounded, and short-cut to the tap transport, by install()),
`aioice.ice.StunProtocol.datagram_received` (media skips its STUN parse attempt) with its `receiver` and
`local_candidate`.
tests/unit/test_hooks.py checks each of these names so that an upgrade fails loudly.
"""

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aioice.ice
import aiortc.codecs
import aiortc.rtp
import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpTransceiver, clock
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
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from actors.media import rtp
from actors.media.codecs import DYNAMIC_PAYLOAD_TYPES, EXTRA_VIDEO_CODECS
from actors.media.ratelog import RateLimitedLog
from actors.media.rtcp import NackTracker
from actors.tasks import spawn

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

MAX_ICE_QUEUE = 2048  # datagrams waiting in one aioice connection before we drop (aioice's is unbounded)
MAX_LEARNED_SSRCS = 16  # unsignalled SSRCs one tap receiver adopts (3 simulcast layers + RTX, with margin)
SENDER_HISTORY = 1024  # packets a passthrough sender keeps for NACKs (a power of two)
SRTP_BUFFER = 1500  # bytes of a sender's SRTP buffer (pylibsrtp's size: packets up to 1356 bytes)

# Process-wide drop counters of the hooks (the worker adds them to its stats).
counters: Counter[str] = Counter()


class RtpSink(Protocol):
    """Where a tap receiver delivers decrypted, RTX-unwrapped RTP (raw bytes, header parsed)."""

    def deliver(
        self, raw: bytes, header: rtp.RtpHeader, rid: str | None, extensions: dict[int, bytes] | None = None
    ) -> None:
        """One packet, synchronously (the hot path has no awaits); `extensions` when already read."""


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
    aioice.ice.Connection.sfu_tap = None  # type: ignore[attr-defined]  # set per object by tap_transport
    aioice.ice.StunProtocol.datagram_received = _demuxed_datagram_received  # type: ignore[method-assign,assignment]


_stun_datagram_received = aioice.ice.StunProtocol.datagram_received


def _demuxed_datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
    """aioice tries to parse every datagram as STUN and takes the ValueError as "not STUN": RFC 7983 tells
    them apart by the first byte (STUN 0-3, DTLS 20-63, RTP/RTCP 128-191), so media skips the attempt."""
    if data and data[0] > 3:
        self.receiver.data_received(data, self.local_candidate.component)
    else:
        _stun_datagram_received(self, data, addr)


def _bounded_data_received(self: Any, data: bytes, component: int) -> None:
    queue: asyncio.Queue[Any] = self._queue
    tap: TapDtlsTransport | None = self.sfu_tap
    if (
        tap is not None
        and len(data) > 12
        and 127 < data[0] < 192  # SRTP or SRTCP
        and not 191 < data[1] < 224  # not SRTCP (RFC 5761)
        and not queue.qsize()  # nothing queued before it: the order stays
        and tap._receive_srtp(data)
    ):
        return
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


async def start_transceivers(pc: RTCPeerConnection) -> None:
    """Run aiortc's connect step again. It starts a negotiation's new senders and receivers only if DTLS is
    connected when that step runs; one that ran while DTLS was still connecting can leave them unstarted
    (seen for senders with the SDKs)."""
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


# ----- DTLS transport tap ----------------------------------------------------------------------------------


class TapDtlsTransport(RTCDtlsTransport):
    """Keeps the raw decrypted bytes, routes by MID as a fallback, admits only SSRCs its tap receivers
    accept, and never lets a bad packet end the transport: aiortc's receive loop closes the DTLS transport
    (the publisher's whole PC) on any exception out of these handlers.

    The hot path: the ICE connection hands an SRTP packet straight to `_receive_srtp` (no queue, no task
    switch), which unprotects it and gives a packet of a known SSRC of a tap receiver straight to that
    receiver, without aiortc's full parse (`RtpPacket.parse` copies the payload and decodes extensions)."""

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        pending = self._route_rtp(data, arrival_time_ms)
        if pending is not None:
            try:
                await pending
            except Exception as e:  # a bug, not bad input: count and log it, keep the PC
                _handler_error(e)

    def _receive_srtp(self, data: bytes) -> bool:
        """An SRTP packet from the ICE connection's datagram callback, handled now: what aiortc's receive
        loop does with it (count, unprotect, handle). False (nothing done) when SRTP is not set up yet: the
        packet then takes aiortc's queue. Never raises (the callback's exception would close the socket)."""
        srtp = self._rx_srtp
        if srtp is None or self._state != State.CONNECTED:
            return False
        self._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        self._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        try:
            data = srtp.unprotect(data)
        except pylibsrtp.Error:  # replayed or forged: aiortc drops it too (and logs it at debug level)
            counters["dropped_srtp_unprotect"] += 1
            return True
        try:
            pending = self._route_rtp(data, None)
            if pending is not None:
                spawn(pending, "routing RTP from a new SSRC")
        except Exception as e:
            _handler_error(e)
        return True

    def _route_rtp(self, data: bytes, arrival_time_ms: int | None) -> Awaitable[None] | None:
        """Hand one decrypted RTP packet to its receiver; returns what is left to await, if anything."""
        try:
            header = rtp.parse_header(data)
        except rtp.RtpError:
            counters["dropped_malformed_rtp"] += 1
            _ratelog.warning("malformed_rtp", "malformed RTP dropped (%d bytes)", len(data))
            return None
        receiver = self._rtp_router.ssrc_table.get(header.ssrc)
        if isinstance(receiver, TapReceiver):
            try:
                receiver._tap_rtp(data, header)
            except Exception as e:
                _handler_error(e)
            return None
        return self._route_new(data, clock.current_ms() if arrival_time_ms is None else arrival_time_ms)

    async def _route_new(self, data: bytes, arrival_time_ms: int) -> None:
        """A packet of an SSRC not routed to a tap receiver yet: aiortc's parse and router (which learns
        an SSRC by its payload type), the MID as a fallback, and the tap receiver's admission."""
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
            _handler_error(e)

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
    connection: Any = transport.transport._connection
    connection.sfu_tap = transport  # the ICE connection's shortcut to us (see install())


def _handler_error(e: Exception) -> None:
    counters["rtp_handler_errors"] += 1
    _ratelog.warning("rtp_handler", "RTP packet dropped on an error: %r", e)


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
        self._pt_info: dict[int, tuple[RTCRtpCodecParameters, bool]] = {}  # payload type -> (codec, is RTX)

    async def receive(self, parameters: RTCRtpReceiveParameters) -> None:
        if self._RTCRtpReceiver__started:
            return
        codecs = self._RTCRtpReceiver__codecs
        self._pt_info.clear()
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
        """aiortc's entry (a packet its router found): the raw bytes TapDtlsTransport kept, to `_tap_rtp`."""
        raw: bytes | None = getattr(packet, "raw", None)
        if raw is None:
            if self._enabled:
                self.counters["dropped_unknown_pt"] += 1
            return
        try:
            header = rtp.parse_header(raw)
        except rtp.RtpError:
            counters["dropped_malformed_rtp"] += 1
            return
        self._tap_rtp(raw, header)

    def _tap_rtp(self, raw: bytes, header: rtp.RtpHeader) -> None:
        """One decrypted packet: RR statistics, RTX unwrap, rid learning, NACKs (sent by a task), then the
        sink's `deliver`."""
        if not self._enabled:
            return
        payload_type = header.payload_type
        info = self._pt_info.get(payload_type)
        if info is None:
            codec = self._RTCRtpReceiver__codecs.get(payload_type)
            if codec is None:
                self.counters["dropped_unknown_pt"] += 1
                return
            info = self._pt_info[payload_type] = (codec, is_rtx(codec))
        codec, rtx = info
        try:
            extensions = (
                rtp.read_extensions(raw, header)
                if header.ext_profile is not None and (self._rid_id or self._rrid_id)
                else None
            )
        except rtp.RtpError:
            counters["dropped_malformed_rtp"] += 1
            return
        ssrc = header.ssrc
        streams: dict[int, StreamStatistics] = self._RTCRtpReceiver__remote_streams
        stats = streams.get(ssrc)
        if stats is None:
            if len(streams) >= MAX_LEARNED_SSRCS:  # a publisher m-line carries at most 3 layers (+ RTX)
                self.counters["dropped_too_many_ssrcs"] += 1
                return
            stats = streams[ssrc] = StreamStatistics(codec.clockRate)
        stats.add(header)  # type: ignore[arg-type]  # reads sequence_number and timestamp only
        if rtx:
            repaired = extensions.get(self._rrid_id) if self._rrid_id and extensions else None
            if repaired:
                self._rtx_rid[ssrc] = repaired.decode(errors="replace")
            unwrapped = self._unwrap_rtx(raw, header, codec, ssrc)
            if unwrapped is None:
                return
            raw = unwrapped
            header = rtp.parse_header(raw)
            extensions = None  # read again by the sink if it needs them
            self.counters["rtx_in"] += 1
        elif self._rid_id:
            rid_value = extensions.get(self._rid_id) if extensions else None
            if rid_value and ssrc not in self.ssrc_rid:
                rid = rid_value.decode(errors="replace")
                self.ssrc_rid[ssrc] = rid
                self.rid_ssrc[rid] = ssrc
        if self._RTCRtpReceiver__nack_generator is not None:  # video
            tracker = self._nacks.get(header.ssrc)
            if tracker is None:
                tracker = self._nacks[header.ssrc] = NackTracker()
            if tracker.add(header.sequence_number):
                self.counters["nacks_sent"] += 1
                spawn(self._send_rtcp_nack(header.ssrc, tracker.missing_list()), "NACK")
        if self.sink is not None:
            self.sink.deliver(raw, header, self.ssrc_rid.get(header.ssrc), extensions)

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
        self._egress = Egress()

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

    def send_now(
        self, data: bytes, sequence_number: int, timestamp: int, payload_length: int, ntp_time: int
    ) -> bool:
        """Send one rewritten packet (SRTP protect + ICE) now; False when the transport is not connected.
        `ntp_time` is the send time (one reading per incoming packet serves all its copies)."""
        self.history[sequence_number % SENDER_HISTORY] = data
        self._RTCRtpSender__ntp_timestamp = ntp_time
        self._RTCRtpSender__rtp_timestamp = timestamp
        self._RTCRtpSender__packet_count += 1
        self._RTCRtpSender__octet_count += payload_length
        try:
            self._egress.send(self.transport, data)
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
                self.remb_bps = bitrate  # read by the worker's REMB policy
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
            self._egress.send(self.transport, data)
        except ConnectionError:
            self.counters["send_errors"] += 1


class Egress:
    """SRTP-protects RTP packets and sends them: aiortc's `RTCDtlsTransport._send_rtp`, which goes through
    four coroutines (DTLS, ICE transport, aioice connection, STUN protocol) per packet, done without any.
    - SRTP: libsrtp's srtp_protect on the DTLS transport's session, in place in this sender's own buffer
      (pylibsrtp's `Session.protect` allocates and copies twice around the same call); the datagram is sent
      straight from that buffer.
    - ICE: it remembers the nominated pair's socket and address and writes to the socket itself (asyncio's
      transport.sendto takes over only when it has a backlog or the socket fails). A TURN pair keeps aioice's
      coroutine, run as a task (tasks run in creation order, so packets keep theirs).
    ConnectionError when not connected, as aiortc."""

    __slots__ = (
        "_addr",
        "_backlog",
        "_buffer",
        "_cdata",
        "_length",
        "_pair",
        "_session",
        "_sock",
        "_srtp",
        "_udp",
        "_view",
    )

    def __init__(self) -> None:
        self._pair: object = None
        self._udp: Any = None  # the pair's asyncio transport (plain UDP; a _SelectorDatagramTransport)
        self._sock: Any = None  # ... and its socket
        self._addr: tuple[str, int] = ("", 0)
        self._session: pylibsrtp.Session | None = None
        self._srtp: Any = None  # the session's srtp_t
        self._cdata = srtp_ffi.new("char[]", SRTP_BUFFER)
        self._buffer = srtp_ffi.buffer(self._cdata)
        self._view = memoryview(self._buffer)
        self._length = srtp_ffi.new("int *")
        self._backlog = False  # a send went to asyncio's transport: it may hold a queue to keep behind

    def send(self, dtls: RTCDtlsTransport, data: bytes) -> None:
        if dtls._state != State.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")
        pair = dtls.transport._connection._nominated.get(1)
        if pair is not self._pair or pair is None:  # None: ICE closed (consent expired) before DTLS knew
            self._route(pair)
        protected = self.protect(dtls._tx_srtp, data)
        udp = self._udp
        if udp is not None:
            if self._sock is None or (self._backlog and udp.get_write_buffer_size()):  # asyncio's queue
                self._send_udp(udp, protected)
            else:
                try:
                    self._sock.sendto(protected, self._addr)
                    self._backlog = False
                except OSError:  # asyncio buffers (a copy) on EAGAIN, reports other errors to the protocol
                    self._backlog = True
                    self._send_udp(udp, protected)
        else:
            spawn(_send_relayed(self._pair, bytes(protected), self._addr), "a send through TURN")
        dtls._RTCDtlsTransport__tx_bytes += len(protected)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__tx_packets += 1  # type: ignore[attr-defined]

    def protect(self, session: pylibsrtp.Session, data: bytes) -> bytes | memoryview:
        """`session.protect(data)`, in this object's buffer: valid until the next call."""
        if session is not self._session:
            self._session, self._srtp = session, session._srtp[0]
        size = len(data)
        if size > SRTP_BUFFER - pylibsrtp.SRTP_MAX_TRAILER_LEN:
            return session.protect(data)  # raises pylibsrtp's ValueError
        self._buffer[0:size] = data
        length = self._length
        length[0] = size
        status = srtp_lib.srtp_protect(self._srtp, self._cdata, length)
        if status:
            raise pylibsrtp.Error(pylibsrtp.ERRORS[status])
        return self._view[0 : length[0]]

    def _route(self, pair: Any) -> None:
        self._pair, self._udp, self._sock = None, None, None
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")
        protocol = pair.protocol
        if type(protocol) is aioice.ice.StunProtocol:
            udp = protocol.transport
            if udp is None or udp.is_closing():
                raise ConnectionError("ICE socket closed")
            sock = getattr(udp, "_sock", None)  # asyncio's _SelectorDatagramTransport
            self._udp, self._sock = udp, sock if isinstance(sock, socket.socket) else None
        self._pair, self._addr = pair, pair.remote_addr

    def _send_udp(self, udp: Any, data: bytes | memoryview) -> None:
        if udp.is_closing():
            self._pair = None
            raise ConnectionError("ICE socket closed")
        udp.sendto(data, self._addr)


async def _send_relayed(pair: Any, data: bytes, addr: tuple[str, int]) -> None:
    try:
        await pair.protocol.send_data(data, addr)
    except (ConnectionError, OSError):
        counters["dropped_relay_send"] += 1


def passthrough_sender(sender: RTCRtpSender) -> PassthroughSender:
    """Turn a (not yet started) aiortc sender into a passthrough sender."""
    if not isinstance(sender, PassthroughSender):
        sender.__class__ = PassthroughSender
        assert isinstance(sender, PassthroughSender)
        sender._passthrough_init()
    return sender
