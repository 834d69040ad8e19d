"""The aiortc/aioice internals actors/media/hooks.py relies on: an aiortc upgrade must fail here, loudly."""

import inspect

import aioice.ice
import aiortc
import aiortc.codecs
import aiortc.rtp
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from actors.media import hooks


def test_pinned_versions() -> None:
    assert aiortc.__version__ == "1.16.0"


def test_private_names_exist() -> None:
    assert inspect.iscoroutinefunction(RTCDtlsTransport._handle_rtp_data)
    assert inspect.iscoroutinefunction(RTCDtlsTransport._handle_rtcp_data)
    assert inspect.iscoroutinefunction(RTCDtlsTransport._send_rtp)
    assert hasattr(RTCPeerConnection, "_RTCPeerConnection__connect")
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_pli)
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_nack)
    assert inspect.iscoroutinefunction(RTCRtpSender._run_rtp)
    assert "component" in inspect.signature(aioice.ice.Connection.data_received).parameters
    assert "_nominated" in vars(aioice.ice.Connection(ice_controlling=True))
    assert isinstance(aioice.ice.CandidatePair.remote_addr, property)
    assert "protocol" in inspect.signature(aioice.ice.CandidatePair).parameters
    assert inspect.iscoroutinefunction(aioice.ice.StunProtocol.send_data)
    assert isinstance(aiortc.rtp.DYNAMIC_PAYLOAD_TYPES, range | frozenset)
    assert "video" in aiortc.codecs.CODECS


async def test_swapped_objects_have_the_fields_the_hooks_use() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    pc.createDataChannel("x")
    transceiver = pc.addTransceiver("video", direction="sendonly")
    hooks.fix_sctp_bundle(pc)
    sctp = pc._RTCPeerConnection__sctp  # type: ignore[attr-defined]
    assert sctp._bundled
    receiver = hooks.tap_receiver(transceiver.receiver)
    for name in (
        "started",
        "codecs",
        "rtx_ssrc",
        "remote_streams",
        "rtcp_ssrc",
        "nack_generator",
        "rtcp_task",
    ):
        assert hasattr(receiver, f"_RTCRtpReceiver__{name}"), name
    sender = hooks.passthrough_sender(transceiver.sender)
    for name in (
        "rtp_started",
        "rtp_exited",
        "ntp_timestamp",
        "rtp_timestamp",
        "packet_count",
        "octet_count",
    ):
        assert hasattr(sender, f"_RTCRtpSender__{name}"), name
    for name in ("_ssrc", "_rtx_ssrc", "_stream_id", "_track_id", "_enabled"):
        assert hasattr(sender, name), name
    hooks.label_sender(sender, "PA_x|TR_y", "TR_y")
    assert hooks.negotiated_codecs(transceiver) == [] and hooks.negotiated_extensions(transceiver) == {}
    transport = transceiver.receiver.transport
    for name in ("_state", "_tx_srtp", "_RTCDtlsTransport__tx_bytes", "_RTCDtlsTransport__tx_packets"):
        assert hasattr(transport, name), name
    assert hasattr(transport.transport, "_connection")
    hooks.tap_transport(transport)
    assert isinstance(transport, hooks.TapDtlsTransport)
    assert hasattr(transport, "_rtp_router") and hasattr(transport, "_rtp_header_extensions_map")
    await pc.setLocalDescription(await pc.createOffer())
    assert "a=msid:PA_x|TR_y TR_y" in pc.localDescription.sdp
    await pc.close()


def test_install_patches_payload_types_and_codecs() -> None:
    hooks.install()
    assert 35 in aiortc.rtp.DYNAMIC_PAYLOAD_TYPES and 127 in aiortc.rtp.DYNAMIC_PAYLOAD_TYPES
    mimes = {c.mimeType for c in aiortc.codecs.CODECS["video"]}
    assert {"video/VP9", "video/AV1"} <= mimes
    pts = [c.payloadType for c in aiortc.codecs.CODECS["video"]]
    assert len(pts) == len(set(pts))
    assert aioice.ice.Connection.data_received is hooks._bounded_data_received
