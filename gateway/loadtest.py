"""`raysfu load-test`: light LiveKit participants (loadgen/) against any server, as `lk load-test` does.

Publishers each publish a video track (and, with --audio, an audio track) of pre-built RTP; every
participant subscribes to every track (auto-subscribe), and --subscribers more join only to subscribe.
After the joins it waits for every subscription's first packet, then measures for --duration seconds:
packets received, loss (from the packets' sequence trailer) and latency (send to receive, in this one
process's clock). The server and key come as for `raysfu room` (gateway/admin.py): flags, else
LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET. A server that cannot be reached or refuses the joins is
one line on stderr and exit code 1.
"""

import argparse
import asyncio
import logging
import os
import secrets
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp
import jwt.warnings

from gateway import admin
from gateway.auth import VideoGrant, mint_token
from loadgen import rtp, stats
from loadgen.livekit_peer import LiveKitPeer
from loadgen.rtp_peer import StreamCounter, summary

JOIN_BATCH = 5  # participants joining at once
MEDIA_WAIT = 30.0  # seconds for every subscription's first packet
PROGRESS_EVERY = 0.5  # seconds between two redraws of the progress bar
BAR = 30  # characters


def add_command(sub: "argparse._SubParsersAction[Any]", server: argparse.ArgumentParser) -> None:
    t = sub.add_parser("load-test", parents=[server], help="join light participants and measure the media")
    t.add_argument("--room", help="the room (default: load-test-<random>)")
    t.add_argument("--publishers", type=_count, default=1, help="participants publishing video (default 1)")
    t.add_argument("--subscribers", type=_count, default=1, help="participants only subscribing (default 1)")
    t.add_argument("--audio", action="store_true", help="publishers publish an audio track too")
    t.add_argument("--video-bitrate", type=_positive, default=500_000, help="bits/s per video track")
    t.add_argument("--duration", type=_positive, default=30, help="seconds measured (default 30)")


def _count(text: str) -> int:
    value = int(text) if text.isdigit() else -1
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1000, not {text!r}")
    return value


def _positive(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, not {text!r}")
    return value


@dataclass
class Figures:
    room: str
    participants: int
    joined: int
    expected_streams: int
    receiving: int  # streams with packets in the measured window
    join_ms: list[float]
    streams: dict[str, Any]  # loadgen.rtp_peer.summary of the measured window
    seconds: float


def main(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)
    # The media hooks' warnings speak of a server's clients ("RTP from unknown SSRC dropped"); here they
    # would be this process's own peers, and what those drop is in the summary's loss already.
    logging.getLogger("actors.media").setLevel(logging.ERROR)
    try:
        url, key, secret = admin.server_settings(args, os.environ if environ is None else environ)
        if args.publishers + args.subscribers < 1:
            raise admin.AdminError("nobody to join: --publishers and --subscribers are both 0")
        figures = asyncio.run(run(args, url.rstrip("/"), key, secret, sys.stderr))
    except admin.AdminError as exc:
        print(f"raysfu: {exc}", file=sys.stderr)
        return 1
    print(report(figures))
    return 0


async def run(args: argparse.Namespace, url: str, key: str, secret: str, out: TextIO) -> Figures:
    room = args.room or f"load-test-{secrets.token_hex(3)}"
    names = [f"pub-{i}" for i in range(args.publishers)] + [f"sub-{i}" for i in range(args.subscribers)]
    peers = [
        LiveKitPeer(url, mint_token(key, secret, name, room, VideoGrant(room_join=True), ttl=3600), name)
        for name in names
    ]
    tracks = args.publishers * (2 if args.audio else 1)
    own = 2 if args.audio else 1
    expected = sum(tracks - own if name.startswith("pub-") else tracks for name in names)
    progress = Progress(out, args.duration, len(peers), expected)
    try:
        join_ms = await _join(peers, args, url, progress)

        def counters() -> list[StreamCounter]:
            return [c for p in peers for c in p.counters.values()]

        deadline = time.monotonic() + MEDIA_WAIT
        while sum(1 for c in counters() if c.packets) < expected and time.monotonic() < deadline:
            progress.draw("waiting for media", len(peers), counters())
            await asyncio.sleep(0.2)
        for counter in counters():
            counter.reset()
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < args.duration:
            progress.draw("measuring", len(peers), counters(), elapsed)
            await asyncio.sleep(min(PROGRESS_EVERY, args.duration - elapsed))
        measured: list[StreamCounter] = [c.snapshot() for c in counters()]
        seconds = time.monotonic() - start
    finally:
        progress.done()
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
    receiving = sum(1 for c in measured if c.packets)
    return Figures(room, len(peers), len(join_ms), expected, receiving, join_ms, summary(measured), seconds)


async def _join(
    peers: list[LiveKitPeer], args: argparse.Namespace, url: str, progress: "Progress"
) -> list[float]:
    """Connect JOIN_BATCH at a time, publishers publishing as they join; their join times in ms."""
    join_ms: list[float] = []

    async def join(peer: LiveKitPeer) -> None:
        try:
            join_ms.append(await peer.connect())
        except aiohttp.WSServerHandshakeError as exc:
            why = f"{url} refused {peer.identity}'s join (HTTP {exc.status}): {exc.message}"
            raise admin.AdminError(why) from None
        except aiohttp.ClientError as exc:
            raise admin.AdminError(f"cannot reach {url}: {exc}") from None
        except TimeoutError:
            raise admin.AdminError(f"{peer.identity} did not connect to {url} in time") from None
        if peer.identity.startswith("pub-"):
            try:
                video = rtp.VideoSource(bitrate=args.video_bitrate, width=640, height=360)
                await peer.publish("video", video=video)
                if args.audio:
                    await peer.publish("audio")
            except TimeoutError:
                raise admin.AdminError(f"{url} did not take {peer.identity}'s track in time") from None

    for first in range(0, len(peers), JOIN_BATCH):
        progress.draw("joining", len(join_ms), [])
        await asyncio.gather(*(join(p) for p in peers[first : first + JOIN_BATCH]))
    return join_ms


class Progress:
    """A one-line progress bar redrawn in place on a terminal; nothing when `out` is not one."""

    def __init__(self, out: TextIO, duration: float, participants: int, expected: int) -> None:
        self.out = out
        self.duration = duration
        self.participants = participants
        self.expected = expected
        self.tty = out.isatty()
        self.drawn = False

    def draw(
        self,
        phase: str,
        joined: int,
        counters: list[StreamCounter],
        elapsed: float = 0.0,
    ) -> None:
        if not self.tty:
            return
        filled = round(BAR * elapsed / self.duration) if phase == "measuring" else 0
        live = sum(1 for c in counters if c.packets)
        packets = sum(c.packets for c in counters)
        line = (
            f"\r[{'#' * filled}{'.' * (BAR - filled)}] {elapsed:4.0f}/{self.duration:.0f} s  {phase}  "
            f"joined {joined}/{self.participants}  streams {live}/{self.expected}  packets {packets}"
        )
        self.out.write(line.ljust(100))
        self.out.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.out.flush()


def report(figures: Figures) -> str:
    s = figures.streams
    latencies = s["latencies_ms"]
    loss = stats.loss_pct(s["expected_packets"], s["unique_packets"])

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    join = figures.join_ms
    rows = [
        ("room", figures.room),
        ("joined", f"{figures.joined} of {figures.participants} participants "
                   f"(join p50 {ms(stats.percentile(join, 50))}, max {ms(max(join, default=None))})"),
        ("streams", f"{figures.receiving} of {figures.expected_streams} subscriptions receiving"),
        ("packets", f"{s['packets']} received in {figures.seconds:.1f} s "
                    f"({s['octets'] * 8 / figures.seconds / 1e6:.2f} Mbit/s)"),
        ("loss", "-" if loss is None else f"{loss:.2f} % ({s['expected_packets'] - s['unique_packets']} "
                 f"of {s['expected_packets']} packets)"),
        ("latency", f"p50 {ms(stats.percentile(latencies, 50))}, p95 {ms(stats.percentile(latencies, 95))}, "
                    f"max {ms(max(latencies, default=None))}"),
    ]  # fmt: skip
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)
