"""Shared by every test: a report header that says whether the run is inside the test network namespace."""

import os


def pytest_report_header() -> str:
    if os.environ.get("RAYSFU_NETNS") == "1":
        return "raysfu: inside the private test network namespace (rsfu0 = 10.213.0.1, see scripts/netns-run)"
    return (
        "raysfu: NOT inside the test network namespace: the interop tests need it "
        "(run `bash scripts/test` as root) or RAYSFU_TEST_ICE_ADDRESS"
    )
