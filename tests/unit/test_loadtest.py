"""`raysfu load-test`'s progress bar, summary and log level (gateway/loadtest.py); against a server, see
tests/interop/test_load_test.py."""

import argparse
import io
import logging

from gateway.loadtest import Figures, Progress, main, report
from loadgen.rtp_peer import StreamCounter, summary


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_redrawn_in_place_on_a_terminal_only() -> None:
    out = Terminal()
    progress = Progress(out, 10.0, participants=3, expected=2)
    counters = [StreamCounter("video", packets=40), StreamCounter("video")]
    progress.draw("measuring", 3, counters, elapsed=5.0)
    progress.done()
    line = out.getvalue()
    assert line.startswith("\r[" + "#" * 15 + "." * 15 + "]") and line.endswith("\n"), line
    assert "5/10 s  measuring  joined 3/3  streams 1/2  packets 40" in line
    plain = io.StringIO()
    quiet = Progress(plain, 10.0, 3, 2)
    quiet.draw("measuring", 3, counters, elapsed=5.0)
    quiet.done()
    assert plain.getvalue() == ""


def test_the_summary() -> None:
    counter = StreamCounter("audio", packets=99, octets=12_500, latencies_ms=[1.0, 2.0, 3.0])
    counter.indexes = set(range(99)) | {100}  # 101 expected, one lost
    figures = Figures("r", 2, 2, 1, 1, [100.0, 300.0], summary([counter]), 1.0)
    assert report(figures).splitlines() == [
        "room     r",
        "joined   2 of 2 participants (join p50 200.0 ms, max 300.0 ms)",
        "streams  1 of 1 subscriptions receiving",
        "packets  99 received in 1.0 s (0.10 Mbit/s)",
        "loss     0.99 % (1 of 101 packets)",
        "latency  p50 2.0 ms, p95 2.9 ms, max 3.0 ms",
    ]


def test_the_media_hooks_warnings_about_its_own_peers_stay_out_of_its_output() -> None:
    """A CI run printed "RTP from unknown SSRC ... dropped" under the summary: a packet that reached one of
    the load-test's own peers in the race of a renegotiation (counted as loss already)."""
    media = logging.getLogger("actors.media")
    level = media.level
    try:
        nobody = argparse.Namespace(
            url="ws://127.0.0.1:9", api_key="k", api_secret="s", publishers=0, subscribers=0
        )
        assert main(nobody, environ={}) == 1
        assert not logging.getLogger("actors.media.hooks").isEnabledFor(logging.WARNING)
        assert logging.getLogger("actors.media.hooks").isEnabledFor(logging.ERROR)
    finally:
        media.setLevel(level)
