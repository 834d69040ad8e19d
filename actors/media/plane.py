"""The RTP media plane of one MediaWorker: publishers' up tracks, subscribers' down tracks, relays, REMB.

The worker (actors/worker.py) exposes this as Ray actor methods; everything here runs on the worker's
event loop and never makes a Ray call per packet. An up track is local (its publisher's PC is here) or a
relayed copy of a track published on another worker (actors/media/relay.py).
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcrtpsender import RTCRtpSender

from actors import tasks
from actors.errors import NotFoundError
from actors.media import hooks, quality
from actors.media.codecs import codec_key
from actors.media.downtrack import DownTrack, layer_qualities
from actors.media.peer import ParticipantPeers
from actors.media.ratelog import RateLimitedLog
from actors.media.relay import Address, RelayOut, RelaySocket, cluster_relay_key
from actors.media.rtcp import REMB_CEILING, remb_target
from actors.media.rtp import AUDIO_LEVEL_URI, REPAIRED_RID_URI, RID_URI
from actors.media.sdp import OfferSection, accept_simulcast, offer_sections
from actors.media.uptrack import CodecInfo, TrackParams, UpTrack
from actors.tasks import spawn

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

REMB_INTERVAL = 1.0  # seconds between REMBs to each video publisher


@dataclass(frozen=True)
class BoundTrack:
    cid: str
    track_sid: str
    mid: str
    kind: str  # "audio" | "video"
    mime_type: str  # e.g. "video/VP8", "audio/opus"
    rids: list[str]


@dataclass(frozen=True)
class PublisherAnswer:
    sdp: str
    bound: list[BoundTrack]
    ended: list[str]  # track sids whose m-line the client stopped
    mid_to_track_id: dict[str, str]  # with one PC: the m-lines that carry tracks to the client


@dataclass(frozen=True)
class RelaySource:
    """What a receiving worker needs to take a relayed copy of a track: where it comes from, its codecs."""

    address: Address
    params: TrackParams
    rids: tuple[str, ...]  # its simulcast layers, as negotiated (the SDKs' TrackInfo layers name no rid)
    sizes: dict[str, tuple[int, int]]  # the layers' announced sizes (UpTrack.announced_sizes)


@dataclass
class _FreedMLine:
    """A subscriber m-line that an unsubscription left idle (inactive), for the next subscription to reuse
    (as LiveKit reuses transceivers), so that the subscriber's SDP does not grow."""

    transceiver: RTCRtpTransceiver
    codec: str | None  # the codec it was negotiated for (its codec preferences)
    carried: set[str]  # the tracks it carried


@dataclass
class _Published:
    publisher_sid: str
    mid: str
    receiver: hooks.TapReceiver
    section: OfferSection
    scorer: quality.Scorer


class MediaPlane:
    def __init__(
        self,
        name: str,
        peer: Callable[[str], ParticipantPeers],
        remb_ceiling: int = REMB_CEILING,
        digest_limit: int = 0,
        relay_key: bytes | None = None,
    ) -> None:
        """`relay_key`: the cluster's (actors.media.relay.cluster_relay_key, from Ray) when None."""
        self.name = name
        self.digest_limit = digest_limit  # see UpTrack.digest_limit
        self._peer = peer
        self.remb_ceiling = remb_ceiling
        self.ups: dict[str, UpTrack] = {}
        self.published: dict[str, _Published] = {}  # local up tracks only
        self.downs: dict[tuple[str, str], DownTrack] = {}  # (subscriber sid, track sid)
        self._sub_transceivers: dict[str, dict[str, RTCRtpTransceiver]] = {}
        self._freed: dict[str, list[_FreedMLine]] = {}  # subscriber sid -> its idle m-lines
        # subscriber sid -> the tracks each of its m-lines carried. Keyed by subscriber first so that its
        # removal drops all of it, whatever state its transceivers reached (a PC the client closed first
        # has them stopped already).
        self._carried: dict[str, dict[RTCRtpTransceiver, set[str]]] = {}
        # With one PC: subscriber sid -> its subscriptions waiting for an m-line (track sid -> publisher
        # sid), and the m-lines of each kind asked of the client for them since its last offer.
        self._unplaced: dict[str, dict[str, str]] = {}
        self._requested: dict[str, Counter[str]] = {}
        self._remb_task: asyncio.Task[None] | None = None
        self.counters: Counter[str] = Counter()
        key = relay_key if relay_key is not None else cluster_relay_key()
        self.relay = RelaySocket(self.counters, self._on_relay_keyframe_request, key)
        hooks.install()

    # ----- publishing -----

    async def publisher_offer(self, sid: str, sdp: str, pending: dict[str, str]) -> PublisherAnswer:
        peers = self._peer(sid)
        sections = offer_sections(sdp) if sdp.startswith("v=0") else []
        by_mid = {s.mid: s for s in sections}
        bound: list[BoundTrack] = []

        def on_remote(pc: RTCPeerConnection) -> Callable[[str], str]:
            mine = {
                p.mid: (track_sid, p) for track_sid, p in self.published.items() if p.publisher_sid == sid
            }
            accepted: dict[str, OfferSection] = {}
            for transceiver in pc.getTransceivers():
                hooks.tap_transport(transceiver.receiver.transport)
                mid = transceiver.mid
                section = by_mid.get(mid) if mid is not None else None
                if section is not None and peers.single_pc and hooks.offered_to_receive(transceiver):
                    # Chrome leaves out of its next offers, new m-lines included, the extensions an answer
                    # declined: its simulcast offer then fails for want of the rid ones (we never send them).
                    hooks.add_header_extensions(transceiver, _rid_extensions(section))
                if section is None or not section.sending:
                    continue
                if mid in mine:  # aiortc renegotiates extensions from scratch: re-apply the rid patch
                    if mine[mid][1].section.rids and transceiver.kind == "video":
                        self._accept_rids(transceiver, section, accepted)
                    continue
                cid = section.msid_track
                if cid is None or cid not in pending or pending[cid] in self.ups:
                    continue
                track = self._bind(sid, transceiver, section, pending[cid], accepted)
                if track is not None:
                    bound.append(
                        BoundTrack(
                            cid, track.track_sid, section.mid, track.kind, track.mime_type, list(track.rids)
                        )
                    )
            if peers.single_pc:
                self._place_unplaced(sid, pc)
            return lambda answer: accept_simulcast(answer, accepted) if accepted else answer

        answer = await peers.publisher_offer(sdp, on_remote)
        ended = [
            track_sid
            for track_sid, p in list(self.published.items())
            if p.publisher_sid == sid and not (by_mid.get(p.mid) and by_mid[p.mid].sending)
        ]
        for track_sid in ended:
            await self.stop_track(track_sid)
        self._ensure_remb()
        mids = self.mid_to_track_id(sid) if peers.single_pc else {}
        return PublisherAnswer(answer, bound, ended, mids)

    def _accept_rids(
        self, transceiver: RTCRtpTransceiver, section: OfferSection, accepted: dict[str, OfferSection]
    ) -> None:
        if len(section.rids) < 2 or section.simulcast is None:
            return
        hooks.add_header_extensions(transceiver, _rid_extensions(section))
        accepted[section.mid] = section

    def _bind(
        self,
        sid: str,
        transceiver: RTCRtpTransceiver,
        section: OfferSection,
        track_sid: str,
        accepted: dict[str, OfferSection],
    ) -> UpTrack | None:
        codecs = [
            c
            for c in hooks.negotiated_codecs(transceiver)
            if c.mimeType.lower() != f"{c.mimeType.split('/')[0]}/rtx"
        ]
        if not codecs:
            log.warning("%s: no common codec for %s (mid %s)", self.name, track_sid, section.mid)
            return None
        kind = transceiver.kind
        rids: list[str] = []
        if kind == "video":
            self._accept_rids(transceiver, section, accepted)
            if section.mid in accepted:
                rids = list(section.rids)
        receiver = hooks.tap_receiver(transceiver.receiver)

        async def request_upstream(rid: str | None, ssrc: int | None) -> None:
            if ssrc is None:
                ssrc = receiver.rid_ssrc.get(rid) if rid is not None else None
            if ssrc is None:
                ssrcs = receiver.media_ssrcs()
                ssrc = ssrcs[0] if ssrcs else None
            if ssrc is not None:
                await receiver.send_pli(ssrc)

        up = UpTrack(track_sid, sid, kind, codecs[0].mimeType, rids, request_upstream)
        up.digest_limit = self.digest_limit
        up.set_params(
            TrackParams(
                tuple(
                    CodecInfo(
                        c.payloadType or 0,
                        c.mimeType,
                        c.clockRate,
                        {k: v for k, v in c.parameters.items() if v is not None},
                    )
                    for c in codecs
                ),
                hooks.negotiated_extensions(transceiver),
            )
        )
        receiver.sink = up
        extensions = up.params.extensions if up.params is not None else {}
        if kind == "audio" and AUDIO_LEVEL_URI in extensions:
            up.measure_audio_level(extensions[AUDIO_LEVEL_URI])
        self.ups[track_sid] = up
        scorer = quality.Scorer(quality.loss_weight(codecs[0].mimeType, codecs[0].parameters))
        self.published[track_sid] = _Published(sid, section.mid, receiver, section, scorer)
        log.info("%s: %s bound to mid %s of %s (rids %s)", self.name, up, section.mid, sid, rids)
        return up

    def announce_layers(self, track_sid: str, layers: list[tuple[int, int, int]]) -> None:
        """The publisher's announced simulcast layers of a local track: (quality, width, height) each."""
        up = self.ups.get(track_sid)
        if up is None or not up.simulcast:
            return
        by_quality = {q: rid for rid, q in layer_qualities(up.rids).items()}
        up.announced_sizes = {
            by_quality[q]: (width, height) for q, width, height in layers if q in by_quality and height
        }

    async def set_track_muted(self, track_sid: str, muted: bool) -> None:
        up = self.ups.get(track_sid)
        if up is not None:
            await up.set_muted(muted)

    async def stop_track(self, track_sid: str) -> None:
        up = self.ups.pop(track_sid, None)
        published = self.published.pop(track_sid, None)
        if published is not None:
            published.receiver.sink = None
        self.relay.forget(track_sid)
        if up is None:
            return
        up.closed = True
        up.relay = None
        for sub_sid in list(up.downs):
            await self.unsubscribe(sub_sid, track_sid)

    # ----- relaying between workers -----

    async def relay_source(self, track_sid: str, host: str) -> RelaySource:
        """This worker's side of relaying a local track: its relay address and the track's codecs."""
        up = self.ups.get(track_sid)
        if up is None or up.relayed_from is not None or up.params is None:
            raise NotFoundError(f"track {track_sid} is not published on {self.name}")
        address = await self.relay.open(host)
        return RelaySource(address, up.params, tuple(up.rids), dict(up.announced_sizes))

    async def expect_relay(
        self,
        track_sid: str,
        publisher_sid: str,
        kind: str,
        source_worker: str,
        source: RelaySource,
        host: str,
    ) -> Address:
        """Create the local copy of a track published on `source_worker`; returns where to send it."""
        address = await self.relay.open(host)
        up = self.ups.get(track_sid)
        if up is None:

            async def request_upstream(rid: str | None, ssrc: int | None) -> None:
                self.relay.request_keyframe(track_sid, rid, source.address)

            up = UpTrack(
                track_sid,
                publisher_sid,
                kind,
                source.params.codecs[0].mime_type,
                list(source.rids),
                request_upstream,
                relayed_from=source_worker,
            )
            up.digest_limit = self.digest_limit
            up.set_params(source.params)
            up.announced_sizes = dict(source.sizes)
            self.ups[track_sid] = up
            log.info("%s: %r relayed from %s", self.name, up, source_worker)
        self.relay.expect(up, source.address)
        return address

    def add_relay(self, track_sid: str, worker: str, address: Address) -> None:
        up = self.ups.get(track_sid)
        if up is None or up.relayed_from is not None:
            raise NotFoundError(f"track {track_sid} is not published on {self.name}")
        if not isinstance(up.relay, RelayOut):
            up.relay = RelayOut(track_sid, self.relay)
        up.relay.add(worker, address)
        log.info("%s: relaying %s to %s at %s:%d", self.name, track_sid, worker, *address)

    def remove_relay(self, track_sid: str, worker: str) -> None:
        up = self.ups.get(track_sid)
        if up is None or not isinstance(up.relay, RelayOut):
            return
        up.relay.remove(worker)
        if not up.relay:
            up.relay = None
        log.info("%s: stopped relaying %s to %s", self.name, track_sid, worker)

    def _on_relay_keyframe_request(self, track_sid: str, rid: str | None, source: Address) -> None:
        up = self.ups.get(track_sid)
        if up is None or not isinstance(up.relay, RelayOut) or not up.relay.sends_to(source):
            self.counters["relay_dropped_unexpected"] += 1
            _ratelog.warning("keyframe", "keyframe request for %s from %s not expected", track_sid, source)
            return
        spawn(up.request_keyframe(rid), f"{track_sid}: keyframe request from {source}")

    # ----- subscribing -----

    async def subscribe(self, sub_sid: str, track_sid: str, publisher_sid: str) -> DownTrack | None:
        """Send the track to the subscriber on an m-line of its own; None when, on one PC, it waits for the
        client to offer one more m-line (see media_sections_requirement)."""
        key = (sub_sid, track_sid)
        existing = self.downs.get(key)
        if existing is not None:
            return existing
        up = self.ups.get(track_sid)
        if up is None:
            raise NotFoundError(f"track {track_sid} is not on {self.name}")
        peers = self._peer(sub_sid)
        if peers.single_pc:
            pc = peers.client_pc()
            transceiver = self._client_m_line(sub_sid, pc, up, track_sid) if pc is not None else None
            if transceiver is None:
                self._unplaced.setdefault(sub_sid, {})[track_sid] = publisher_sid
                return None
            return self._attach(sub_sid, up, track_sid, publisher_sid, transceiver)
        pc = peers.subscriber_pc()
        transceiver = self._reusable(sub_sid, up, track_sid)
        if transceiver is not None:
            transceiver.direction = "sendonly"  # its sender keeps its SSRC, seq and timestamps run on
        else:
            transceiver = pc.addTransceiver(up.kind, direction="sendonly")
            hooks.fix_sctp_bundle(pc)
            preferences = self._codec_preferences(up)
            if preferences:
                transceiver.setCodecPreferences(preferences)
        return self._attach(sub_sid, up, track_sid, publisher_sid, transceiver)

    def _attach(
        self, sub_sid: str, up: UpTrack, track_sid: str, publisher_sid: str, transceiver: RTCRtpTransceiver
    ) -> DownTrack:
        self._carried.setdefault(sub_sid, {}).setdefault(transceiver, set()).add(track_sid)
        sender = hooks.passthrough_sender(transceiver.sender)
        hooks.label_sender(sender, f"{publisher_sid}|{track_sid}", track_sid)
        down = DownTrack(sub_sid, up, sender)
        up.downs[sub_sid] = down
        self.downs[(sub_sid, track_sid)] = down
        self._sub_transceivers.setdefault(sub_sid, {})[track_sid] = transceiver
        return down

    def _client_m_line(
        self, sub_sid: str, pc: RTCPeerConnection, up: UpTrack, track_sid: str
    ) -> RTCRtpTransceiver | None:
        """With one PC: an m-line the client offered to receive on, for the track, answered sendonly from
        now on: an idle one (as on two PCs), else one never used. Its codecs are cut down to the track's
        now, for the answer being made, and by preference for every later offer."""
        transceiver = self._reusable(sub_sid, up, track_sid)
        if transceiver is None:
            transceiver = next(
                (
                    t
                    for t in pc.getTransceivers()
                    if t.kind == up.kind
                    and t.mid is not None
                    and not t.stopped
                    and t not in self._carried.get(sub_sid, {})
                    and hooks.offered_to_receive(t)
                ),
                None,
            )
        if transceiver is None:
            return None
        preferences = self._codec_preferences(up)
        if preferences:
            transceiver.setCodecPreferences(preferences)
            hooks.restrict_codecs(transceiver, preferences)
        transceiver.direction = "sendonly"
        return transceiver

    def _place_unplaced(self, sub_sid: str, pc: RTCPeerConnection) -> None:
        """With one PC, during a client offer: the subscriptions that wait for an m-line take the free
        ones this offer has."""
        waiting = self._unplaced.get(sub_sid, {})
        for track_sid, publisher_sid in list(waiting.items()):
            up = self.ups.get(track_sid)
            if up is None:  # unpublished meanwhile
                del waiting[track_sid]
                continue
            transceiver = self._client_m_line(sub_sid, pc, up, track_sid)
            if transceiver is not None:
                del waiting[track_sid]
                self._attach(sub_sid, up, track_sid, publisher_sid, transceiver)
        self._requested.pop(sub_sid, None)  # what was asked for came with this offer, or never will

    def media_sections_requirement(self, sub_sid: str) -> tuple[int, int]:
        """With one PC: how many more audio and video m-lines to ask the client for (LiveKit's
        MediaSectionsRequirement), for the subscriptions waiting for one and not asked for yet."""
        waiting = Counter(self.ups[t].kind for t in self._unplaced.get(sub_sid, {}) if t in self.ups)
        asked = self._requested.setdefault(sub_sid, Counter())
        audios = max(0, waiting["audio"] - asked["audio"])
        videos = max(0, waiting["video"] - asked["video"])
        asked.update(audio=audios, video=videos)
        return audios, videos

    def mid_to_track_id(self, sub_sid: str) -> dict[str, str]:
        """The m-lines that carry tracks to this subscriber: mid -> track sid."""
        return {
            t.mid: track_sid
            for track_sid, t in self._sub_transceivers.get(sub_sid, {}).items()
            if t.mid is not None
        }

    def _reusable(self, sub_sid: str, up: UpTrack, track_sid: str) -> RTCRtpTransceiver | None:
        """An idle m-line of this subscriber for the track: of its kind and codec, negotiated idle (the SDKs
        report a track when its m-line turns from inactive to receiving), and one that never carried this
        track: the Python SDK (livekit 1.2.1, on /rtc) reports a track for an m-line and stream id (which
        names the track) only once per session, so an m-line that carried the track would not deliver it
        again. A resubscription to the same track therefore takes another m-line."""
        freed = self._freed.get(sub_sid, [])
        codec = _codec_of(up)
        for i, line in enumerate(freed):
            t = line.transceiver
            if (
                t.kind == up.kind
                and line.codec == codec
                and track_sid not in line.carried
                and t.currentDirection == "inactive"
                and not t.stopped
            ):
                del freed[i]
                return t
        return None

    @staticmethod
    def _codec_preferences(up: UpTrack) -> list[Any]:
        """Only the publisher's codec (+ RTX): the subscriber must not pick one we cannot forward."""
        want = _codec_of(up)
        if want is None:
            return []
        capabilities = RTCRtpSender.getCapabilities(up.kind).codecs
        chosen = [c for c in capabilities if codec_key(c.mimeType, c.parameters) == want][:1]
        if not chosen:
            return []
        return chosen + [c for c in capabilities if c.mimeType.lower().endswith("/rtx")]

    async def unsubscribe(self, sub_sid: str, track_sid: str) -> None:
        self._unplaced.get(sub_sid, {}).pop(track_sid, None)
        down = self.downs.pop((sub_sid, track_sid), None)
        if down is not None:
            down.close()
        transceiver = self._sub_transceivers.get(sub_sid, {}).pop(track_sid, None)
        if transceiver is not None and not transceiver.stopped:
            transceiver.direction = "inactive"  # the m-line goes inactive at the next offer
            # The idle m-line must stop naming the track: two m-lines naming one track make the SDK abort.
            hooks.label_sender(transceiver.sender, "-", f"idle-{transceiver.mid}")
            codec = _codec_of(down.up) if down is not None else None
            line = _FreedMLine(transceiver, codec, self._carried.get(sub_sid, {}).get(transceiver, set()))
            self._freed.setdefault(sub_sid, []).append(line)

    async def set_subscription_settings(
        self, sub_sid: str, track_sid: str, disabled: bool, quality: int, width: int, height: int
    ) -> int | None:
        """Apply a subscriber's UpdateTrackSettings to its down track; returns what it now needs of the
        publisher (DownTrack.max_quality) for a video track, None for audio or when it is not here."""
        down = self.downs.get((sub_sid, track_sid))
        if down is None:
            return None
        await down.set_settings(quality, width, height)
        await down.set_paused(disabled)
        return down.max_quality() if down.up.kind == "video" else None

    async def remove_participant(self, sid: str) -> None:
        for track_sid, published in list(self.published.items()):
            if published.publisher_sid == sid:
                await self.stop_track(track_sid)
        for sub_sid, track_sid in list(self.downs):
            if sub_sid == sid:
                await self.unsubscribe(sub_sid, track_sid)
        self._sub_transceivers.pop(sid, None)
        self._freed.pop(sid, None)
        self._carried.pop(sid, None)
        self._unplaced.pop(sid, None)
        self._requested.pop(sid, None)

    # ----- REMB policy -----

    def _ensure_remb(self) -> None:
        if self._remb_task is None or self._remb_task.done():
            self._remb_task = asyncio.ensure_future(self._remb_loop())

    async def _remb_loop(self) -> None:
        while True:
            await asyncio.sleep(REMB_INTERVAL)
            for track_sid, published in list(self.published.items()):
                up = self.ups.get(track_sid)
                if up is None or up.kind != "video" or up.muted:
                    continue
                bitrate = remb_target(
                    self.remb_ceiling, (d.sender.remb_bps for d in up.downs.values()), up.simulcast
                )
                try:
                    await published.receiver.send_remb(bitrate, published.receiver.media_ssrcs())
                except Exception as exc:
                    if track_sid in self.published:
                        log.exception("%s: REMB to %s failed", self.name, track_sid)
                    else:  # the track ended while its REMB was on its way: a teardown race
                        _ratelog.info(
                            "remb_ended", "%s: no REMB to %s, it ended: %r", self.name, track_sid, exc
                        )

    # ----- speakers and connection quality -----

    def speaker_level(self, track_sids: list[str], now: float) -> float | None:
        """The speaking level of the loudest active one of these local audio tracks; None when none is."""
        levels = []
        for track_sid in track_sids:
            up = self.ups.get(track_sid)
            if up is not None and up.audio_level is not None and not up.muted:
                level, active = up.audio_level.level(now)
                if active:
                    levels.append(level)
        return max(levels, default=None)

    def score_tracks(self) -> dict[str, float]:
        """One connection quality window for every local published track and every subscription; returns
        each participant's lowest score, of the tracks it publishes here and the subscriptions it has."""
        lowest: dict[str, float] = {}
        for track_sid, published in self.published.items():
            up = self.ups.get(track_sid)
            if up is not None:
                receiver = published.receiver
                expected, received = receiver.packet_counts()
                report = receiver.last_sender_report()
                stale = report is not None and time.time() - report > quality.UPDATE_INTERVAL
                published.scorer.update_totals(expected, expected - received, up.muted, rtcp_stale=stale)
                sid, score = published.publisher_sid, published.scorer.score
                lowest[sid] = min(score, lowest.get(sid, score))
        for (sub_sid, _), down in self.downs.items():
            down.score()
            score = down.scorer.score
            lowest[sub_sid] = min(score, lowest.get(sub_sid, score))
        return lowest

    async def close(self) -> None:
        if self._remb_task is not None:
            self._remb_task.cancel()
        self.relay.close()

    # ----- stats -----

    def packets(self) -> int:
        """RTP packets received (up tracks) and sent (down tracks) so far."""
        return sum(up.packets_in for up in self.ups.values()) + sum(
            d.packets_out for d in self.downs.values()
        )

    def census(self) -> dict[str, int]:
        """How many of each thing the media plane holds (bench soak: all back to 0 when everyone left)."""
        return {
            "up_tracks": len(self.ups),
            "published_tracks": len(self.published),
            "down_tracks": len(self.downs),
            "subscriber_transceivers": sum(len(t) for t in self._sub_transceivers.values()),
            "unplaced_subscriptions": sum(len(t) for t in self._unplaced.values()),
            "relay_out_targets": sum(
                len(up.relay.stats()) for up in self.ups.values() if up.relay is not None
            ),
            "relay_in_tracks": self.relay.incoming_tracks,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "tracks": {sid: up.stats() for sid, up in self.ups.items()},
            "drops": dict(hooks.counters) | dict(tasks.errors),
            "relay": dict(self.counters),
        }


def _rid_extensions(section: OfferSection) -> dict[str, int]:
    return {u: i for u, i in section.extensions.items() if u in (RID_URI, REPAIRED_RID_URI)}


def _codec_of(up: UpTrack) -> str | None:
    """The codec the subscriber m-lines of this track are negotiated for (their codec preferences)."""
    if up.params is None or not up.params.codecs:
        return None
    first = up.params.codecs[0]
    return codec_key(first.mime_type, first.parameters)
