"""ICE configuration for the SFU's peer connections, and the clients' trickled candidates.

aiortc falls back to a public STUN server when no ICE servers are given: the configuration names them
always. (What aioice does wrong for a server, host candidates and consent checks, is patched in
actors/media/hooks/aioice.py.)
"""

import json
import logging
from collections.abc import Iterable

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceCandidate, RTCIceServer
from aiortc.sdp import candidate_from_sdp

from actors.errors import CandidateError

log = logging.getLogger(__name__)


def rtc_configuration(stun_servers: Iterable[str]) -> RTCConfiguration:
    """Max-bundle and only the configured STUN servers ([] keeps aiortc off its public default)."""
    urls = list(stun_servers)
    servers = [RTCIceServer(urls=urls)] if urls else []
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def parse_candidate_init(candidate_init: str) -> RTCIceCandidate | None:
    """The client's trickled `RTCIceCandidateInit` JSON as an aiortc candidate; None for end-of-candidates."""
    try:
        init = json.loads(candidate_init)
    except ValueError as e:
        raise CandidateError(f"candidate is not JSON: {e}") from None
    if not isinstance(init, dict):
        raise CandidateError("candidate is not a JSON object")
    line = init.get("candidate")
    if not line:
        return None
    mid = init.get("sdpMid")
    index = init.get("sdpMLineIndex")
    if not isinstance(line, str) or not isinstance(mid, str | None) or not isinstance(index, int | None):
        raise CandidateError("candidate fields have the wrong types")
    if mid is None and index is None:
        raise CandidateError("candidate has neither sdpMid nor sdpMLineIndex")
    try:
        candidate = candidate_from_sdp(line.removeprefix("candidate:"))
    except (AssertionError, ValueError, IndexError):
        raise CandidateError(f"unparseable candidate {line[:200]!r}") from None
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate
