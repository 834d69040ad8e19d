"""`raysfu load-test` against the test server: its summary, and one line for a server it cannot use."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.sdk import Server

pytestmark = pytest.mark.timeout(120)

RAYSFU = str(Path(sys.executable).with_name("raysfu"))


def load_test(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAYSFU, "load-test", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_the_summary_counts_every_participant_and_stream(server: Server, room_name: str) -> None:
    done = load_test(
        "--url", server.url, "--api-key", server.api_key, "--api-secret", server.api_secret,
        "--room", room_name, "--publishers", "2", "--subscribers", "2", "--audio", "--duration", "3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no progress bar when stderr is not a terminal
    rows = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert rows["room"] == room_name
    assert rows["joined"].startswith("4 of 4 participants"), rows
    # each publisher receives the other's 2 tracks, each subscriber all 4
    assert rows["streams"] == "12 of 12 subscriptions receiving", rows
    packets = re.match(r"(\d+) received in ([\d.]+) s", rows["packets"])
    assert packets is not None and int(packets[1]) > 12 * 3 * 20, rows  # audio: 50 packets/s per stream
    loss = re.match(r"([\d.]+) %", rows["loss"])
    assert loss is not None and float(loss[1]) < 5.0, rows
    latency = re.match(r"p50 ([\d.]+) ms, p95 ([\d.]+) ms", rows["latency"])
    assert latency is not None and 0 < float(latency[1]) <= float(latency[2]) < 1000, rows


def test_a_refused_join_is_one_line(server: Server) -> None:
    done = load_test(
        "--url", server.url, "--api-key", server.api_key, "--api-secret", "wrong", "--duration", "1"
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "refused pub-0's join (HTTP 401)" in done.stderr, done.stderr


def test_an_unreachable_server_or_a_bad_flag_is_one_line() -> None:
    done = load_test("--url", "ws://127.0.0.1:9", "--api-key", "k", "--api-secret", "s", timeout=30)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("raysfu: cannot reach ws://127.0.0.1:9") and done.stderr.count("\n") == 1
    bad = load_test("--publishers", "many")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--publishers" in bad.stderr, bad.stderr
