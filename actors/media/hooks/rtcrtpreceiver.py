"""The tap receiver: TapReceiver in place of aiortc's RTCRtpReceiver, per object."""

import asyncio
import logging
from collections import Counter

from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
)

from actors.media import rtp
from actors.media.hooks.common import RtpSink, counters
from actors.media.rtcp import NackTracker
from actors.tasks import spawn

log = logging.getLogger(__name__)

MAX_LEARNED_SSRCS = 16  # unsignalled SSRCs one tap receiver adopts (3 simulcast layers + RTX, with margin)


class TapReceiver(RTCRtpReceiver):
    """A receiver with no decoder: RR statistics, RTX unwrap, per-SSRC NACKs, rid learning, then `sink`."""

    # aiortc's private fields (name-mangled), declared for the type checker
    _RTCRtpReceiver__remote_streams: dict[int, StreamStatistics]
    _RTCRtpReceiver__started: bool
    _RTCRtpReceiver__codecs: dict[int, RTCRtpCodecParameters]
    _RTCRtpReceiver__nack_generator: object | None
    _RTCRtpReceiver__rtx_ssrc: dict[int, int]
    _RTCRtpReceiver__rtcp_ssrc: int | None
    _RTCRtpReceiver__lsr_time: dict[int, float]
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

    def packet_counts(self) -> tuple[int, int]:
        """(expected, received) media packets so far, by sequence numbers; a packet repaired by RTX counts
        as received."""
        rtx = set(self._RTCRtpReceiver__rtx_ssrc) | set(self._rtx_rid)
        expected, received = 0, self.counters["rtx_in"]
        for ssrc, stats in self._RTCRtpReceiver__remote_streams.items():
            if ssrc not in rtx:
                expected += stats.packets_expected
                received += stats.packets_received
        return expected, received

    def last_sender_report(self) -> float | None:
        """When (time.time()) the publisher's last sender report arrived; None before the first."""
        return max(self._RTCRtpReceiver__lsr_time.values(), default=None)

    def media_ssrcs(self) -> list[int]:
        """SSRCs of media (not RTX) seen so far."""
        rtx = set(self._RTCRtpReceiver__rtx_ssrc) | set(self._rtx_rid)
        return [s for s in self._RTCRtpReceiver__remote_streams if s not in rtx]

    def packets_lost(self) -> int:
        """Media packets missing from the sequence so far (before NACK repairs them: a retransmission
        arrives on the RTX stream)."""
        streams: dict[int, StreamStatistics] = self._RTCRtpReceiver__remote_streams
        return sum(max(0, streams[s].packets_lost) for s in self.media_ssrcs())


def tap_receiver(receiver: RTCRtpReceiver) -> TapReceiver:
    """Turn a (not yet started) aiortc receiver into a tap receiver."""
    if not isinstance(receiver, TapReceiver):
        receiver.__class__ = TapReceiver
        assert isinstance(receiver, TapReceiver)
        receiver._tap_init()
    return receiver
