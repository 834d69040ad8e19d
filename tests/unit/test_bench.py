"""The pure parts of bench/: percentiles, CPU accounting from /proc samples, result shape, RTP builders."""

import json
from pathlib import Path

import pytest

from actors.media import codecs
from actors.media import rtp as sfu_rtp
from bench import janus, machine, proc, result, soak
from bench.measure import Window
from bench.result import ScenarioError
from bench.scenarios import MEDIA_WORKER_COMM, MediaPlan, MediaRun, media_figures
from loadgen import rtp, stats
from loadgen.rtp_peer import StreamCounter


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(x) for x in range(1, 101)]  # 1..100
    assert stats.percentile(values, 50) == pytest.approx(50.5)
    assert stats.percentile(values, 99) == pytest.approx(99.01)
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 100.0
    assert stats.percentile([7.0], 99) == 7.0
    assert stats.percentile([], 50) is None
    assert stats.percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    with pytest.raises(ValueError):
        stats.percentile(values, 101)


def test_cpu_per_packet_and_loss() -> None:
    assert stats.cpu_us_per_packet(1.5, 100_000) == pytest.approx(15.0)
    assert stats.cpu_us_per_packet(1.0, 0) is None
    assert stats.loss_pct(1000, 990) == pytest.approx(1.0)
    assert stats.loss_pct(1000, 1005) == 0.0
    assert stats.loss_pct(0, 0) is None


def _stat(pid: int, ppid: int, comm: str, utime: int, stime: int) -> str:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    return f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 1 0 5 0 0"


def test_parse_stat_survives_odd_process_names() -> None:
    s = proc.parse_stat(_stat(42, 7, "ray::Media) (x", 120, 30))
    assert (s.pid, s.ppid, s.comm, s.utime, s.stime) == (42, 7, "ray::Media) (x", 120, 30)


def _fake_proc(tmp_path: Path, rows: list[tuple[int, int, str, int, int]], pss: dict[int, int]) -> Path:
    for pid, ppid, comm, utime, stime in rows:
        d = tmp_path / str(pid)
        d.mkdir(exist_ok=True)
        (d / "stat").write_text(_stat(pid, ppid, comm, utime, stime))
        if pid in pss:
            (d / "smaps_rollup").write_text(f"Rss:  999 kB\nPss:  {pss[pid]} kB\nPss_Anon: 1 kB\n")
    (tmp_path / "self").mkdir(exist_ok=True)  # not a pid: ignored
    return tmp_path


def test_tree_cpu_counts_the_tree_new_processes_and_ones_that_exit(tmp_path: Path) -> None:
    # serve(10) -> gcs(11), raylet(12) -> worker(13); 20 is outside the tree (the bench itself)
    rows = [(10, 1, "raysfu", 100, 10), (11, 10, "gcs_server", 50, 5), (12, 10, "raylet", 20, 2),
            (13, 12, "ray::Media", 300, 30), (20, 1, "python", 1000, 0)]  # fmt: skip
    root = _fake_proc(tmp_path, rows, {})
    cpu = proc.TreeCpu(10, root)
    cpu.start()
    assert cpu.seconds() == 0
    # a second later: everyone worked; a new worker 14 appeared; worker 13 exits after this sample
    rows = [(10, 1, "raysfu", 110, 10), (11, 10, "gcs_server", 52, 5), (12, 10, "raylet", 20, 3),
            (13, 12, "ray::Media", 400, 40), (14, 12, "ray::Room", 7, 3),
            (20, 1, "python", 5000, 0)]  # fmt: skip
    _fake_proc(tmp_path, rows, {})
    cpu.sample()
    for child in (tmp_path / "13").iterdir():
        child.unlink()
    (tmp_path / "13").rmdir()
    cpu.sample()
    ticks = (
        10 + 2 + 1 + 110 + 10
    )  # serve, gcs, raylet, the exited worker (last seen), the new one (all of it)
    assert cpu.seconds() == pytest.approx(ticks / proc.CLOCK_TICKS)
    by_name = cpu.by_name()
    assert by_name["ray::Media"] == pytest.approx(110 / proc.CLOCK_TICKS, abs=1e-3)
    assert "python" not in by_name


def test_pss_sums_the_tree(tmp_path: Path) -> None:
    rows = [(10, 1, "raysfu", 0, 0), (11, 10, "raylet", 0, 0), (12, 11, "ray::W", 0, 0), (20, 1, "x", 0, 0)]
    root = _fake_proc(tmp_path, rows, {10: 1024, 11: 2048, 12: 1024, 20: 99999})
    assert proc.tree_pss_mb(10, root) == pytest.approx(4.0)
    assert proc.parse_pss_kb("Rss: 5 kB\n") == 0


def test_pss_by_label_names_ray_workers_and_python_daemons(tmp_path: Path) -> None:
    rows = [(10, 1, "raysfu", 0, 0), (11, 10, "ray::MediaWorke", 0, 0), (12, 10, "ray::MediaWorke", 0, 0),
            (13, 10, "python", 0, 0), (14, 10, "python3", 0, 0), (15, 10, "raylet", 0, 0)]  # fmt: skip
    root = _fake_proc(tmp_path, rows, {10: 1024, 11: 2048, 12: 1024, 13: 512, 14: 512, 15: 512})
    cmdlines = {11: ["ray::MediaWorker.census", ""], 12: ["ray::MediaWorker"],
                13: ["/x/bin/python", "-u", "/site/ray/dashboard/dashboard.py", "--x"],
                14: ["python3", "-m", "ray.util.client.server"],
                15: ["/ray/core/src/ray/raylet/raylet", "--a"]}  # fmt: skip

    def titles(argv: dict[int, list[str]]) -> None:
        for pid, args in argv.items():
            (root / str(pid) / "cmdline").write_bytes("\0".join(args).encode() + b"\0")

    titles(cmdlines)
    pss = proc.TreePss(10, root)
    expected = {
        "ray::MediaWorker": 3.0, "raysfu": 1.0, "dashboard.py": 0.5, "ray.util.client.server": 0.5,
        "raylet": 0.5,
    }  # fmt: skip
    assert pss.by_label() == expected
    titles({12: ["ray::room.join"]})  # busy with a named call: still a MediaWorker
    assert pss.by_label() == expected


def test_machine_parsers() -> None:
    assert machine.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert machine.mem_total_gib("MemTotal:       24576000 kB\n") == pytest.approx(23.4, abs=0.05)


def test_new_result_has_every_required_key_and_serialises() -> None:
    r = result.new_result("fanout-10", n=10)
    assert result.check(r) == []
    assert set(result.REQUIRED_KEYS) <= set(r)
    assert r["scenario"] == "fanout-10" and r["params"] == {"n": 10}
    assert {"cpu_model", "cores", "ram_gib", "kernel", "python"} <= set(r["machine"])
    json.loads(result.write(r, None))
    r["loss_pct"] = "none"
    del r["forwarded_pps"]
    assert result.check(r) == ["missing key 'forwarded_pps'", "loss_pct is str, not a number or null"]


def test_opus_packet_header_toc_and_trailer() -> None:
    payload = rtp.opus_payload(80, index=7, sent_ns=123_456_789)
    packet = rtp.header(111, 65535, 960, 0xDEADBEEF, marker=False) + payload
    assert len(payload) == 80 and payload[0] == rtp.OPUS_TOC
    h = sfu_rtp.parse_header(packet)
    assert (h.payload_type, h.sequence_number, h.timestamp, h.ssrc, h.marker) == (
        111,
        65535,
        960,
        0xDEADBEEF,
        0,
    )
    assert rtp.read_trailer(packet) == rtp.Trailer(sent_ns=123_456_789, index=7)
    assert rtp.read_trailer(packet[:-16] + b"XXXX" + packet[-12:]) is None  # no magic
    assert rtp.read_trailer(b"\x80" * 10) is None


def test_vp8_frame_sizes_average_the_bitrate() -> None:
    key, delta = rtp.frame_sizes(1_500_000, 30, 3.0)
    gop = 90
    assert key + (gop - 1) * delta == pytest.approx(1_500_000 / 8 * 3, rel=0.01)
    assert key == pytest.approx(6 * delta, rel=0.01)


def test_vp8_keyframe_and_delta_packets_as_an_sfu_sees_them() -> None:
    source = rtp.VideoSource(bitrate=1_500_000, fps=30, keyframe_every_s=1.0, width=640, height=360)
    ts0, key = source.next_frame()
    ts1, delta = source.next_frame()
    assert (ts0, ts1) == (0, 3000)
    assert len(key) > len(delta) >= 1
    assert all(len(p) <= rtp.MAX_PAYLOAD for p in key + delta)
    assert codecs.vp8_keyframe(key[0]) and codecs.vp8_resolution(key[0]) == (640, 360)
    assert not any(codecs.vp8_keyframe(p) for p in key[1:])  # S bit only on the first packet
    assert not codecs.vp8_keyframe(delta[0])
    # picture ids follow each other; trailer indexes run across frames without gaps
    assert (key[0][2] & 0x7F, key[0][3]) == (0x00, 0) and delta[0][3] == 1
    indexes = [rtp.read_trailer(b"\x00" * 12 + p) for p in key + delta]
    assert [t.index for t in indexes if t] == list(range(len(key) + len(delta)))
    packets = list(rtp.packets(96, 1234, 65534, ts0, key))
    markers = [sfu_rtp.parse_header(p).marker for _, p in packets]
    assert markers == [0] * (len(key) - 1) + [1]
    assert [seq for seq, _ in packets][:3] == [65534, 65535, 0]


def test_keyframe_on_request_restarts_the_interval() -> None:
    source = rtp.VideoSource(fps=10, keyframe_every_s=10.0)
    source.next_frame()
    source.next_frame()
    source.request_keyframe()
    _, payloads = source.next_frame()
    assert codecs.vp8_keyframe(payloads[0])
    _, payloads = source.next_frame()
    assert not codecs.vp8_keyframe(payloads[0])


def _window(seconds: float, server_cpu_s: float, by_process: dict[str, float]) -> Window:
    return Window(
        seconds=seconds,
        server_cpu_s=server_cpu_s,
        generator_cpu_s=0.5,
        server_cpu_by_process=by_process,
        loadavg=(0.0, 0.0, 0.0),
    )


def test_media_figures_split_the_fixed_cost_from_forwarding() -> None:
    """10 s forwarding 1,000 packets for 3 s of CPU, of which 1 s is what the same sessions cost silent
    (0.1 s/s in the idle window): 3,000 µs per packet in all, 2,000 above idle; the media worker's 1.5 s."""
    counter = StreamCounter("video")
    counter.indexes = set(range(1000))
    counter.packets = 1000
    run = MediaRun(
        join_ms=[10.0],
        first_media_ms=[5.0],
        counters=[counter],
        window=_window(10.0, 3.0, {MEDIA_WORKER_COMM: 1.5, "ray::Participan": 1.0}),
        idle=_window(5.0, 0.5, {"ray::Participan": 0.5}),
        pss_base=100.0,
        pss_joined=110.0,
        pss_media=111.0,
        sent_packets=1000,
        late_ticks=0,
        keyframe_requests=0,
        extra={},
    )
    figures = media_figures(MediaPlan("fanout", 1), run)
    assert figures["cpu_us_per_forwarded_packet"] == pytest.approx(3000.0)
    assert figures["cpu_us_per_forwarded_packet_above_idle"] == pytest.approx(2000.0)
    assert figures["media_workers_cpu_us_per_forwarded_packet"] == pytest.approx(1500.0)
    assert figures["server_idle_cpu_pct"] == pytest.approx(10.0)
    assert figures["server_idle_cpu_ms_per_s_per_participant"] == pytest.approx(50.0)  # 2 participants


def test_a_stream_counter_snapshot_keeps_the_window() -> None:
    counter = StreamCounter("audio")
    counter.indexes.add(1)
    counter.latencies_ms.append(1.0)
    frozen = counter.snapshot()
    counter.indexes.add(2)
    counter.latencies_ms.append(2.0)
    counter.packets += 1
    assert frozen.indexes == {1} and frozen.latencies_ms == [1.0] and frozen.packets == 0


def test_janus_is_not_installed_from_inside_the_network_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """apt-get has no route out of the namespace: the error says to install Janus from outside it."""
    monkeypatch.setattr(janus, "janus_binary", lambda: None)
    monkeypatch.setattr(janus.os, "geteuid", lambda: 0)
    monkeypatch.setenv("RAYSFU_NETNS", "1")
    ran: list[object] = []
    monkeypatch.setattr(janus.subprocess, "run", lambda *a, **k: ran.append(a))
    with pytest.raises(ScenarioError, match="inside the test network namespace"):
        janus.ensure_installed()
    assert ran == []


def test_soak_rooms_take_new_names_as_time_goes_on() -> None:
    """Each slot keeps its room for ROOM_LIFETIME s, then joins go to a room never used before."""
    first = soak.room_name(0, 0.0)
    assert soak.room_name(0, soak.ROOM_LIFETIME - 1) == first
    later = {soak.room_name(0, k * soak.ROOM_LIFETIME) for k in range(5)}
    assert len(later) == 5 and first in later
    assert soak.room_name(1, 0.0) != first
