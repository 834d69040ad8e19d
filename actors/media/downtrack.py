"""One subscriber's copy of one up track: layer choice, pause, and the per-packet rewrite for its m-line.

Sequence numbers and timestamps live on the sender (its SSRC), so the subscriber sees one continuous
stream across mute, pause, layer switches and unsubscribe/resubscribe on the same m-line.
"""

import logging
import random
import time

from actors.media import hooks, quality, rtp
from actors.media.codecs import codec_key
from actors.media.hooks import PassthroughSender
from actors.media.ratelog import RateLimitedLog
from actors.media.uptrack import UpTrack, digest, digests_hex

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

LAYER_ORDER = ("q", "h", "f")  # LiveKit's rids, low to high
MAX_JUMP = 300  # an incoming sequence jump beyond this (e.g. after an upstream mute) re-anchors
RESELECT_INTERVAL = 0.5  # seconds between re-evaluations of the simulcast layer to forward
LOW, MEDIUM, HIGH, OFF = 0, 1, 2, 3  # livekit.VideoQuality
DIMENSION_TOLERANCE = 0.9  # LiveKit's: a layer this much smaller than the size asked for still does


def ordered_rids(rids: list[str]) -> list[str]:
    known = [r for r in LAYER_ORDER if r in rids]
    return known if len(known) == len(rids) else list(rids)


def layer_qualities(rids: list[str]) -> dict[str, int]:
    """Each layer's VideoQuality (LOW 0, MEDIUM 1, HIGH 2): LiveKit's rids q, h, f, else by position."""
    order = ordered_rids(rids)
    return {r: LAYER_ORDER.index(r) if r in LAYER_ORDER else min(i, HIGH) for i, r in enumerate(order)}


def max_layer(
    rids: list[str], quality: int, width: int, height: int, sizes: dict[str, tuple[int, int]]
) -> str | None:
    """The highest layer a subscriber's settings ask for, by LiveKit's rules: with a width, the smallest
    layer whose height is at least 0.9 x the height asked for (the largest when none is); else, or when the
    layers' sizes are not known, the highest layer of at most `quality` (the lowest when none is). Heights
    are compared, portrait or not, as LiveKit does when it knows the layers' sizes."""
    order = ordered_rids(rids)
    if not order:
        return None
    heights = [sizes[r][1] if r in sizes else 0 for r in order]
    if width > 0 and all(heights):
        wanted = height * DIMENSION_TOLERANCE
        by_height = sorted(range(len(order)), key=lambda i: heights[i])  # stable: equal heights by quality
        for pos, i in enumerate(by_height):
            last = pos == len(by_height) - 1
            if last or (heights[i] >= wanted and heights[i] != heights[by_height[pos + 1]]):
                return order[i]
    elif width > 0:
        quality = HIGH  # LiveKit's choice when it knows no sizes
    qualities = layer_qualities(order)
    fitting = [r for r in order if qualities[r] <= quality]
    return fitting[-1] if fitting else order[0]


def select_layer(rids: list[str], active: list[str], ceiling: str | None) -> str | None:
    """The best active layer up to `ceiling` (the highest the subscriber asks for); the lowest active
    layer when none is at or below it; None when no layer is active."""
    order = ordered_rids(rids)
    usable = [r for r in order if r in active]
    if not usable:
        return None
    allowed = order[: order.index(ceiling) + 1] if ceiling in order else order
    fitting = [r for r in usable if r in allowed]
    return fitting[-1] if fitting else usable[0]


def _first_parameters(up: UpTrack) -> dict[str, str | int]:
    return up.params.codecs[0].parameters if up.params is not None and up.params.codecs else {}


class DownTrack:
    def __init__(self, sub_sid: str, up: UpTrack, sender: PassthroughSender) -> None:
        self.sub_sid = sub_sid
        self.up = up
        self.sender = sender
        self.paused = False
        self.quality = 2
        self.width = 0
        self.height = 0
        self.current: str | None = None  # rid being forwarded
        self.target: str | None = None
        self.packets_out = 0
        self.bytes_out = 0
        self.padding_dropped = 0
        self.switches = 0
        self.digests_out: list[int] = []
        self.first_seq: int | None = None  # first outgoing sequence number of this down track
        self._params_version = -1
        self._pt_map: dict[int, int] = {}
        self._plan = rtp.ExtensionPlan()
        self._anchored = False
        self._need_keyframe = up.kind == "video"
        self._seq_off = 0
        self._ts_off = 0
        self._anchor_seq = 0
        self._last_in_seq: int | None = None
        self._reselect_at = 0.0
        self.scorer = quality.Scorer(quality.loss_weight(up.mime_type, _first_parameters(up)))
        self._scored_sent = 0  # packets_out at the last window
        self._scored_report: object = None  # the receiver report the last window used
        sender.listener = self

    def __repr__(self) -> str:
        return f"DownTrack({self.up.track_sid}->{self.sub_sid})"

    # ----- control -----

    def restart(self) -> None:
        """Start again on the next (key)frame, continuing this sender's seq/ts."""
        self._anchored = False
        self._need_keyframe = self.up.kind == "video"

    async def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:  # resume on a keyframe of the layer its settings now ask for
            self.restart()
            await self.up.request_keyframe(self._want(time.monotonic()))

    async def set_settings(self, quality: int, width: int, height: int) -> None:
        self.quality, self.width, self.height = quality, width, height
        self._reselect_at = 0.0
        if self.up.simulcast and not self.paused:
            want = self._want(time.monotonic())
            if want is not None and want != self.current:
                await self.up.request_keyframe(want)

    def ceiling(self) -> str | None:
        """The highest simulcast layer this subscriber's settings ask for (None when not simulcast)."""
        if not self.up.simulcast:
            return None
        return max_layer(self.up.rids, self.quality, self.width, self.height, self.up.layer_sizes())

    def max_quality(self) -> int:
        """What this subscription needs the publisher to send (LiveKit's dynacast): the quality of the
        highest layer it asks for, OFF while it is paused."""
        if self.paused:
            return OFF
        ceiling = self.ceiling()
        return HIGH if ceiling is None else layer_qualities(self.up.rids)[ceiling]

    def close(self) -> None:
        if self.up.downs.get(self.sub_sid) is self:
            del self.up.downs[self.sub_sid]
        if self.sender.listener is self:
            self.sender.listener = None

    def score(self) -> None:
        """One connection quality window, from the subscriber's receiver reports (quality.UPDATE_INTERVAL)."""
        sent = self.packets_out - self._scored_sent
        self._scored_sent = self.packets_out
        report = self.sender.last_report
        if report is None or report is self._scored_report:  # no news from the subscriber: unchanged
            return
        self._scored_report = report
        lost = report.packets_lost - self.sender.skipped  # less what never reached the forwarder
        muted = self.up.muted or self.paused
        self.scorer.update_totals(report.highest_sequence, lost, muted, expecting=sent > 0)

    # ----- sender listener -----

    async def on_keyframe_request(self) -> None:
        await self.up.request_keyframe(self.current)

    # ----- hot path -----

    def _setup(self) -> bool:
        params = self.sender.params
        up_params = self.up.params
        if params is None or up_params is None:
            return False
        by_key: dict[str, int] = {}
        for sub_codec in params.codecs:
            if sub_codec.payloadType is not None and not sub_codec.mimeType.lower().endswith("/rtx"):
                by_key.setdefault(codec_key(sub_codec.mimeType, sub_codec.parameters), sub_codec.payloadType)
        self._pt_map = {}
        for codec in up_params.codecs:
            out = by_key.get(codec_key(codec.mime_type, codec.parameters))
            if out is not None:
                self._pt_map[codec.payload_type] = out
        sub_ext = {e.uri: e.id for e in params.headerExtensions}
        self._plan = rtp.ExtensionPlan.between(up_params.extensions, sub_ext, params.muxId or "")
        self._params_version = self.sender.params_version
        return True

    def _want(self, now: float) -> str | None:
        if not self.up.simulcast:
            return None
        self.target = select_layer(self.up.rids, self.up.active_rids(now), self.ceiling())
        return self.target

    def forward(
        self,
        raw: bytes,
        header: rtp.RtpHeader,
        rid: str | None,
        is_keyframe: bool,
        now: float,
        ntp: int,
        extensions: dict[int, bytes] | None = None,
    ) -> None:
        """One incoming packet for this subscriber (no awaits: keyframe requests upstream run as tasks);
        `ntp` is the NTP time of this packet's fan-out, `extensions` the packet's header extensions (None
        when it has no extension block)."""
        sender = self.sender
        if self.paused or not sender.running:
            return
        if self._params_version != sender.params_version and not self._setup():
            return
        out_pt = self._pt_map.get(header.payload_type)
        if out_pt is None:
            return
        up = self.up
        switching = False
        if up.simulcast:
            if now >= self._reselect_at or self.target is None:
                self._want(now)
                self._reselect_at = now + RESELECT_INTERVAL
            if rid != self.current:
                if rid == self.target and is_keyframe:
                    switching = True
                else:
                    if rid == self.target:
                        up.request_keyframe_soon(rid)
                    return
            elif self.target is not None and self.target != self.current:
                up.request_keyframe_soon(self.target)
        seq = header.sequence_number
        last_in = self._last_in_seq
        if self._anchored and not switching and last_in is not None:
            jump = (seq - last_in) & 0xFFFF
            if MAX_JUMP < jump < 0x10000 - MAX_JUMP:
                self._anchored = False  # the source restarted or skipped (e.g. muted upstream)
            elif not rtp.seq_newer(seq, self._anchor_seq) and seq != self._anchor_seq:
                return  # older than where this layer's forwarding began
        if not self._anchored or switching:
            if self._need_keyframe and not is_keyframe:
                up.request_keyframe_soon(rid)
                return
            if header.padding_only:
                return
            self._anchor(header, now)
            if switching:
                self.current = rid
                self.switches += 1
            last_in = self._last_in_seq
        payload_length = header.payload_length
        if not payload_length:  # padding only
            self._seq_off = (self._seq_off - 1) & 0xFFFF  # compact: later packets fill the hole
            self.padding_dropped += 1
            return
        if last_in is None or rtp.seq_newer(seq, last_in):
            self._last_in_seq = seq
        out_seq = (seq + self._seq_off) & 0xFFFF
        out_ts = (header.timestamp + self._ts_off) & 0xFFFFFFFF
        plan = self._plan
        send_time = (
            rtp.abs_send_time(ntp) if extensions is not None and plan.abs_send_time_id is not None else None
        )
        try:
            out = rtp.rewrite(raw, header, plan, out_pt, out_seq, out_ts, sender.ssrc, send_time, extensions)
        except rtp.RtpError as e:  # e.g. an extension block aiortc's parser let through but ours cannot read
            hooks.counters["dropped_unforwardable_rtp"] += 1
            _ratelog.warning("unforwardable", "%r: RTP packet not forwardable, dropped: %s", self, e)
            return
        last_out = sender.last_seq
        if last_out is None or rtp.seq_newer(out_seq, last_out):
            if last_out is not None:
                sender.skipped += (out_seq - last_out - 1) & 0xFFFF
            sender.last_seq, sender.last_ts, sender.last_time = out_seq, out_ts, now
        else:
            sender.skipped -= 1  # a late packet (retransmitted upstream) fills a hole
        if self.up.digest_limit and len(self.digests_out) < self.up.digest_limit:
            start = len(out) - (len(raw) - header.header_length)
            self.digests_out.append(digest(memoryview(out)[start : start + payload_length]))
        if self.first_seq is None:
            self.first_seq = out_seq
        if sender.send_now(out, out_seq, out_ts, payload_length, ntp):
            self.packets_out += 1
            self.bytes_out += payload_length

    def _anchor(self, header: rtp.RtpHeader, now: float) -> None:
        sender = self.sender
        if sender.last_seq is None or sender.last_ts is None:
            next_seq, next_ts = random.randint(0, 0x7FFF), random.getrandbits(32)
        else:
            next_seq = (sender.last_seq + 1) & 0xFFFF
            elapsed = max(1, int((now - sender.last_time) * self.up.clock_rate))
            next_ts = (sender.last_ts + elapsed) & 0xFFFFFFFF
        self._seq_off = (next_seq - header.sequence_number) & 0xFFFF
        self._ts_off = (next_ts - header.timestamp) & 0xFFFFFFFF
        self._anchor_seq = header.sequence_number
        self._last_in_seq = header.sequence_number
        self._anchored = True
        self._need_keyframe = False

    def stats(self) -> dict[str, object]:
        return {
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "padding_dropped": self.padding_dropped,
            "paused": self.paused,
            "layer": self.current,
            "target": self.target,
            "switches": self.switches,
            "ssrc": self.sender.ssrc,
            "first_seq": self.first_seq,
            "last_seq": self.sender.last_seq,
            "remb": self.sender.remb_bps,
            "sender": dict(self.sender.counters),
            "digests_out": digests_hex(self.digests_out),
        }
