"""A Ray driver that does not spin while the GCS is unreachable.

The gateway is a Ray driver (`ray.init` in gateway/server.py). Ray's driver follows the GCS's error and log
channels in two threads, `ray_listen_error_messages` and `ray_print_logs` (ray/_private/worker.py), each
calling its subscriber's `poll()` in a loop. When the GCS cannot be reached, `poll()` returns nothing at
once (gRPC UNAVAILABLE) and both loops call it again without waiting (measured: ~17,000 polls a second in
one thread). So while a cluster's head is down or restarting, every gateway burns up to a core in each of
those threads. Seen on the 2-core test cluster: the two surviving gateways took 1.6 cores from the first
second of the head's loss, and the media their workers forwarded stopped for up to 1.3 s.

`install()` wraps the two subscribers Ray creates: a poll that returns nothing waits `UNAVAILABLE_WAIT`
before it returns (at once when the driver disconnects). A GCS that answers is long-polled as before.
Relies on ray==2.60.0's `ray._raylet.GcsErrorSubscriber` and `GcsLogSubscriber` (looked up by
`ray._private.worker.connect`) and the worker's `threads_stopped` event; tests/unit/test_gcs_polling.py
fails if an upgrade moves them.
"""

from typing import Any

import ray._raylet
from ray._private import worker as ray_worker

UNAVAILABLE_WAIT = 0.5  # seconds between polls of a GCS that does not answer
SUBSCRIBERS = ("GcsErrorSubscriber", "GcsLogSubscriber")


class PatientSubscriber:
    """One of Ray's GCS subscribers whose empty polls wait before they return."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        result = self._inner.poll(*args, **kwargs)
        if _empty(result):
            ray_worker.global_worker.threads_stopped.wait(UNAVAILABLE_WAIT)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _empty(result: Any) -> bool:
    """Nothing, as the error channel says it (None, None), or the log channel (a message with no lines; its
    None, which Ray's comment promises, was not seen)."""
    if isinstance(result, dict):
        return not result.get("lines")
    return result is None or result == (None, None)


def _patient(make: Any) -> Any:
    def make_patient(*args: Any, **kwargs: Any) -> PatientSubscriber:
        return PatientSubscriber(make(*args, **kwargs))

    make_patient.patient = True  # type: ignore[attr-defined]
    return make_patient


def install() -> None:
    """Before `ray.init`: the subscribers it creates for the driver are patient. Idempotent."""
    for name in SUBSCRIBERS:
        make = getattr(ray._raylet, name)
        if not getattr(make, "patient", False):
            setattr(ray._raylet, name, _patient(make))
