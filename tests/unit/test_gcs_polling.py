"""gateway.gcs_polling against the pinned Ray: a driver whose GCS is gone spins in two threads unless the
subscribers are made patient."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway import gcs_polling

ROOT = Path(__file__).resolve().parents[2]


def run_driver(*flags: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.gcs_loss_driver", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["threads"] == ["ray_listen_error_messages", "ray_print_logs"], report
    return report


def test_rays_driver_spins_while_its_gcs_is_gone() -> None:
    """Why the hook exists: if this fails after a Ray upgrade, Ray waits by itself and the hook can go."""
    report = run_driver()
    assert report["patient"] == [False, False]
    assert report["gcs_up"] < 0.1, report
    assert report["gcs_down"] > 0.5, report  # of 3 s: ~0.8 of a core measured


def test_a_patient_driver_waits_while_its_gcs_is_gone() -> None:
    report = run_driver("--patient")
    assert report["patient"] == [True, True]
    assert report["gcs_up"] < 0.1, report
    assert report["gcs_down"] < 0.1, report


class Inner:
    def __init__(self, results: list[Any]) -> None:
        self.results = results
        self.last_batch_size = 7

    def poll(self, timeout: float | None = None) -> Any:
        return self.results.pop(0)


def test_only_empty_polls_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []

    class Stopped:
        def wait(self, timeout: float) -> bool:
            waited.append(timeout)
            return False

    monkeypatch.setattr(gcs_polling.ray_worker.global_worker, "threads_stopped", Stopped(), raising=False)
    message, no_lines = {"lines": ["x"], "pid": "1"}, {"lines": [], "pid": ""}
    results = [message, no_lines, None, (b"id", {"error": 1}), (None, None)]
    patient = gcs_polling.PatientSubscriber(Inner(list(results)))
    assert [patient.poll() for _ in results] == results
    assert waited == [gcs_polling.UNAVAILABLE_WAIT] * 3  # after no_lines, None and (None, None)
    assert patient.last_batch_size == 7  # everything else is the inner subscriber's


def test_install_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in gcs_polling.SUBSCRIBERS:
        monkeypatch.setattr(gcs_polling.ray._raylet, name, getattr(gcs_polling.ray._raylet, name))
    gcs_polling.install()
    first = [getattr(gcs_polling.ray._raylet, name) for name in gcs_polling.SUBSCRIBERS]
    gcs_polling.install()
    assert [getattr(gcs_polling.ray._raylet, name) for name in gcs_polling.SUBSCRIBERS] == first
