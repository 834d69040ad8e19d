"""RTCPeerConnection and RTCRtpTransceiver internals: negotiated parameters, extra header extensions, the
connect step a renegotiation needs, and aiortc's SCTP bundle bug."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
from aiortc import RTCPeerConnection, RTCRtpTransceiver
from aiortc.exceptions import InvalidStateError
from aiortc.rtcpeerconnection import filter_preferred_codecs
from aiortc.rtcrtpparameters import (
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)

log = logging.getLogger(__name__)


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    return codecs


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    return {e.uri: e.id for e in transceiver._headerExtensions}


def offered_to_receive(transceiver: RTCRtpTransceiver) -> bool:
    """Whether the remote offer's m-line only receives (recvonly): the client offers it for us to send on."""
    direction: str | None = transceiver._offerDirection  # the remote's direction, from our side
    return direction == "sendonly"


def restrict_codecs(transceiver: RTCRtpTransceiver, preferences: list[RTCRtpCodecCapability]) -> None:
    """Narrow the codecs negotiated by the offer being answered to `preferences` (with their RTX), as
    setCodecPreferences would have before the offer was applied; unchanged when none of them is common."""
    narrowed = filter_preferred_codecs(transceiver._codecs, preferences)
    if narrowed:
        transceiver._codecs = narrowed


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


def ice_connections(pc: RTCPeerConnection) -> list[aioice.ice.Connection]:
    """The aioice connections under `pc` (one with max-bundle, once the first negotiation bundled them)."""
    transports = getattr(pc, "_RTCPeerConnection__iceTransports")  # noqa: B009
    return [t._connection for t in transports]


def fix_sctp_bundle(pc: RTCPeerConnection) -> None:
    """aiortc bug: with max-bundle, a transceiver added after the data channels shares the SCTP transport,
    but the SCTP transport is still marked unbundled, so applying a BUNDLE answer whose first mid is the
    transceiver's stops the shared (primary) transport and ICE never connects. Mark it bundled."""
    sctp = getattr(pc, "_RTCPeerConnection__sctp")  # noqa: B009
    if sctp is None or sctp._bundled:
        return
    if any(t.receiver.transport is sctp.transport for t in pc.getTransceivers()):
        sctp._bundled = True


_CONNECT = "_RTCPeerConnection__connect"


_connecting: dict[asyncio.Task[Any], RTCPeerConnection] = {}  # connect steps under way, and their PC


def tolerate_connect_after_close() -> None:
    """aiortc runs its connect step as a task nobody awaits or holds; when the connection fails or closes
    meanwhile (a client that leaves, or whose ICE never connects):
    - the step raises InvalidStateError ("RTCIceTransport is closed"), which asyncio logs as an ERROR with a
      traceback. That is a teardown race, not a fault: it is logged at INFO. Any other error propagates.
    - or the step waits for good, and once nothing else holds the closed PC the garbage collector destroys
      the pending task, which asyncio logs as an ERROR ("Task was destroyed but it is pending!"). So the
      step is held here while it runs and cancelled when its PC closes.
    Process-wide, idempotent (install())."""
    original: Callable[[RTCPeerConnection], Awaitable[None]] = getattr(RTCPeerConnection, _CONNECT)
    if getattr(original, "tolerant", False):
        return
    original_close = RTCPeerConnection.close

    async def connect(pc: RTCPeerConnection) -> None:
        task = asyncio.current_task()
        if task is not None:
            _connecting[task] = pc
        try:
            await original(pc)
        except InvalidStateError as exc:
            ice_states = {
                t.receiver.transport.transport.state for t in pc.getTransceivers() if t.receiver.transport
            }
            if not ice_states & {"closed", "failed"} and pc.connectionState not in ("closed", "failed"):
                raise
            log.info("connect step ended: the connection closed meanwhile (%s)", exc)
        finally:
            if task is not None:
                _connecting.pop(task, None)

    async def close(pc: RTCPeerConnection) -> None:
        await original_close(pc)
        for task, owner in list(_connecting.items()):
            if owner is pc:
                task.cancel()

    connect.tolerant = True  # type: ignore[attr-defined]
    setattr(RTCPeerConnection, _CONNECT, connect)
    setattr(RTCPeerConnection, "close", close)  # noqa: B010
