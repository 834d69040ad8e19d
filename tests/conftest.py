"""Shared by every test: a report header that says whether the run is inside the test network namespace."""

import os

# Ray decides when imported whether 127.0.0.1 means loopback or the LAN address (see gateway/cli.py): tests
# that start Ray themselves, and the drivers the tests spawn, stay on loopback even outside the namespace.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def pytest_report_header() -> str:
    if os.environ.get("RAYSFU_NETNS") == "1":
        return "raysfu: inside the private test network namespace (rsfu0 = 10.213.0.1, see scripts/netns-run)"
    return (
        "raysfu: NOT inside the test network namespace: the interop tests need it "
        "(run `bash scripts/test` as root) or RAYSFU_TEST_ICE_ADDRESS"
    )
