"""raysfu benchmarks: a light WebRTC load generator, the scenarios, and a Janus peer to compare with.

`python -m bench <scenario> [--json FILE]` (see bench/__main__.py and docs/benchmarks.md).
"""
