"""RTCPeerConnection and RTCRtpTransceiver internals: negotiated parameters, extra header extensions, the
connect step a renegotiation needs, and aiortc's SCTP bundle bug."""

import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)

log = logging.getLogger(__name__)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    return codecs


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    return {e.uri: e.id for e in transceiver._headerExtensions}


def add_header_extensions(transceiver: RTCRtpTransceiver, extensions: dict[str, int]) -> None:
    """Negotiate extra header extensions on this m-line (after setRemoteDescription, before the answer)."""
    present = {e.uri for e in transceiver._headerExtensions}
    for uri, ext_id in extensions.items():
        if uri not in present:
            transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))


async def start_transceivers(pc: RTCPeerConnection) -> None:
    """Run aiortc's connect step again. It starts a negotiation's new senders and receivers only if DTLS is
    connected when that step runs; one that ran while DTLS was still connecting can leave them unstarted
    (seen for senders with the SDKs)."""
    connect: Callable[[], Awaitable[None]] = getattr(pc, "_RTCPeerConnection__connect")  # noqa: B009
    await connect()


def fix_sctp_bundle(pc: RTCPeerConnection) -> None:
    """aiortc bug: with max-bundle, a transceiver added after the data channels shares the SCTP transport,
    but the SCTP transport is still marked unbundled, so applying a BUNDLE answer whose first mid is the
    transceiver's stops the shared (primary) transport and ICE never connects. Mark it bundled."""
    sctp = getattr(pc, "_RTCPeerConnection__sctp")  # noqa: B009
    if sctp is None or sctp._bundled:
        return
    if any(t.receiver.transport is sctp.transport for t in pc.getTransceivers()):
        sctp._bundled = True
