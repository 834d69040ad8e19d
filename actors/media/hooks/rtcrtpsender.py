"""The passthrough sender: PassthroughSender in place of aiortc's RTCRtpSender, per object, and its Egress."""

import asyncio
import logging
import socket
from collections import Counter
from typing import Any, Protocol

import aioice.ice
import aioice.stun
import pylibsrtp
from aiortc.codecs import is_rtx
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from actors.media import rtp
from actors.media.hooks.common import counters
from actors.tasks import spawn

log = logging.getLogger(__name__)

SENDER_HISTORY = 1024  # packets a passthrough sender keeps for NACKs (a power of two)
SRTP_BUFFER = 1500  # bytes of a sender's SRTP buffer (pylibsrtp's size: packets up to 1356 bytes)


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
        # The subscriber's last receiver report on this SSRC, and the sequence numbers this sender skipped
        # so far (packets lost before they reached the forwarder): for the connection quality score.
        self.last_report: RtcpReceiverInfo | None = None
        self.skipped = 0
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
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
                for report in packet.reports:
                    if report.ssrc == self._ssrc:
                        self.last_report = report
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
        """Through asyncio's transport, which queues what the socket refuses (EAGAIN). Nothing upstream
        pauses for it (aioice's protocol ignores pause_writing), so a subscriber whose socket stays full
        would grow that queue without end: past the transport's high-water mark the packet is dropped and
        counted instead, as the network would drop it, and NACK/PLI recover it."""
        if udp.is_closing():
            self._pair = None
            raise ConnectionError("ICE socket closed")
        if udp.get_write_buffer_size() >= udp.get_write_buffer_limits()[1]:
            counters["dropped_egress_backlog"] += 1
            return
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


def label_sender(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """The msid ("stream track") the next offer announces for this sender."""
    sender._stream_id = stream_id
    sender._track_id = track_id
