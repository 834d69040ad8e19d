"""The process-wide set-up of aiortc and aioice for the SFU (`install`, idempotent)."""

import logging

import aioice.ice
import aioice.stun
import aiortc.codecs
import aiortc.rtp
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
)

from actors.media.codecs import DYNAMIC_PAYLOAD_TYPES, EXTRA_VIDEO_CODECS
from actors.media.hooks.aioice import bounded_data_received, demuxed_datagram_received
from actors.media.hooks.rtcpeerconnection import tolerate_connect_after_close

log = logging.getLogger(__name__)

_installed = False


def install() -> None:
    """Process-wide patches (idempotent): PTs 35-63, VP9/AV1/H264 codec entries, bounded ICE queues, a
    connect step that tolerates a connection closed meanwhile."""
    global _installed
    if _installed:
        return
    _installed = True
    # libwebrtc numbers AV1/H264 variants 35-63; aiortc keeping its own PT there duplicates a PT in the
    # answer, and the Rust SDK aborts on "Duplicate payload type".
    aiortc.rtp.DYNAMIC_PAYLOAD_TYPES = DYNAMIC_PAYLOAD_TYPES  # type: ignore[assignment]
    video = aiortc.codecs.CODECS["video"]
    feedback = [
        RTCRtcpFeedback(type="nack"),
        RTCRtcpFeedback(type="nack", parameter="pli"),
        RTCRtcpFeedback(type="goog-remb"),
    ]
    taken = {c.payloadType for c in video}
    for entry in EXTRA_VIDEO_CODECS:
        if entry.payload_type in taken:
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType=entry.mime_type,
                clockRate=90000,
                payloadType=entry.payload_type,
                rtcpFeedback=list(feedback),
                parameters=dict(entry.parameters),
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=90000,
                payloadType=entry.payload_type + 1,
                parameters={"apt": entry.payload_type},
            )
        )
    aioice.ice.Connection.data_received = bounded_data_received  # type: ignore[method-assign]
    aioice.ice.Connection.sfu_tap = None  # type: ignore[attr-defined]  # set per object by tap_transport
    aioice.ice.StunProtocol.datagram_received = demuxed_datagram_received  # type: ignore[method-assign,assignment]
    tolerate_connect_after_close()
