"""The aiortc/aioice/pylibsrtp/asyncio internals actors/media/hooks/ relies on: an upgrade must fail here,
loudly."""

import asyncio
import gc
import inspect
import os
import socket
import struct
from importlib.metadata import version
from types import SimpleNamespace

import aioice.candidate
import aioice.ice
import aioice.stun
import aioice.turn
import aiortc
import aiortc.codecs
import aiortc.rtp
import pylibsrtp
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
from aiortc.rtcrtpsender import RTCRtpSender
from pylibsrtp import Policy, Session

from actors.media import hooks, rtp
from tests.unit.media_peers import connected_ice_pair


def test_pinned_versions() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert version("pylibsrtp") == "1.0.0"


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
    # the SRTP hot path (hooks.TapDtlsTransport._receive_srtp, hooks.Egress)
    assert "addr" in inspect.signature(aioice.ice.StunProtocol.datagram_received).parameters
    assert "local_candidate" in aioice.ice.StunProtocol.__annotations__
    assert hasattr(aioice.ice.StunProtocol(receiver=None), "receiver")  # type: ignore[arg-type]
    assert "_queue" in vars(aioice.ice.Connection(ice_controlling=True))
    assert hasattr(pylibsrtp._binding.lib, "srtp_protect") and pylibsrtp.SRTP_MAX_TRAILER_LEN >= 16
    assert isinstance(pylibsrtp.ERRORS, list)
    # host candidates on the configured ports (hooks.aioice.ranged_component_candidates)
    gather = inspect.signature(aioice.ice.Connection.get_component_candidates).parameters
    assert list(gather) == ["self", "component", "addresses", "timeout"]
    assert {"_protocols", "stun_server", "turn_server"} <= set(
        vars(aioice.ice.Connection(ice_controlling=True))
    )
    assert list(inspect.signature(aioice.ice.server_reflexive_candidate).parameters) == [
        "protocol",
        "stun_server",
    ]
    assert aioice.candidate.candidate_priority(1, "host") > aioice.candidate.candidate_priority(1, "srflx")
    assert isinstance(aioice.candidate.candidate_foundation("host", "udp", "127.0.0.1"), str)
    assert isinstance(aioice.turn.UDP_SOCKET_BUFFER_SIZE, int)


async def test_datagram_transport_has_the_socket_and_buffer_egress_uses() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    try:
        assert isinstance(transport._sock, socket.socket)  # type: ignore[attr-defined]
        assert transport.get_write_buffer_size() == 0  # type: ignore[attr-defined]
        low, high = transport.get_write_buffer_limits()  # type: ignore[attr-defined]
        assert 0 <= low < high
    finally:
        transport.close()


def test_egress_drops_past_the_transports_high_water_mark_instead_of_queueing() -> None:
    """A subscriber whose socket stays full (EAGAIN) must not grow asyncio's queue without end: past the
    transport's high-water mark a packet is dropped and counted."""

    class FullTransport:
        def __init__(self) -> None:
            self.queued = 0
            self.sent: list[bytes] = []

        def is_closing(self) -> bool:
            return False

        def get_write_buffer_size(self) -> int:
            return self.queued

        def get_write_buffer_limits(self) -> tuple[int, int]:
            return (1000, 4000)

        def sendto(self, data: bytes, addr: object) -> None:
            self.queued += len(data)  # the socket takes nothing
            self.sent.append(bytes(data))

    udp = FullTransport()
    egress = hooks.Egress()
    before = hooks.counters["dropped_egress_backlog"]
    for _ in range(10):
        egress._send_udp(udp, b"x" * 1000)
    assert len(udp.sent) == 4 and udp.queued == 4000
    assert hooks.counters["dropped_egress_backlog"] - before == 6


def test_egress_protects_as_pylibsrtp_does() -> None:
    key = os.urandom(30)
    ours, theirs = (
        Session(
            Policy(
                key=key,
                ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            )
        )
        for _ in range(2)
    )
    assert hasattr(ours, "_srtp")
    egress = hooks.Egress()
    for seq in range(3):
        packet = struct.pack("!BBHII", 0x80, 96, seq, 1000, 0x1234) + os.urandom(1000)
        assert bytes(egress.protect(ours, packet)) == theirs.protect(packet)


def test_stream_statistics_take_our_parsed_header() -> None:
    stats = StreamStatistics(90000)
    for seq in (10, 11, 13):
        raw = struct.pack("!BBHII", 0x80, 96, seq, 3000 * seq, 0x1234) + b"x"
        stats.add(rtp.parse_header(raw))  # type: ignore[arg-type]
    assert stats.packets_received == 3 and stats.max_seq == 13 and stats.packets_lost == 1
    assert stats.packets_expected == 4  # read by TapReceiver.packet_counts


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
        "lsr_time",
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
    for name in (
        "_state",
        "_tx_srtp",
        "_rx_srtp",
        "_RTCDtlsTransport__tx_bytes",
        "_RTCDtlsTransport__tx_packets",
        "_RTCDtlsTransport__rx_bytes",
        "_RTCDtlsTransport__rx_packets",
    ):
        assert hasattr(transport, name), name
    assert hasattr(transport.transport, "_connection")
    hooks.install()
    hooks.tap_transport(transport)
    assert isinstance(transport, hooks.TapDtlsTransport)
    assert transport.transport._connection.sfu_tap is transport
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
    assert aioice.ice.Connection.data_received is hooks.aioice.bounded_data_received
    assert aioice.ice.StunProtocol.datagram_received is hooks.aioice.demuxed_datagram_received


def test_egress_refuses_when_ice_has_no_pair_but_dtls_still_says_connected() -> None:
    """Consent expiry closes the ICE connection (no nominated pair) before DTLS leaves CONNECTED: a send then
    is a ConnectionError, as aiortc's, and not an AttributeError in a task."""
    connection = SimpleNamespace(_nominated={})
    dtls = SimpleNamespace(_state=State.CONNECTED, transport=SimpleNamespace(_connection=connection))
    egress = hooks.Egress()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            egress.send(dtls, b"\x80" * 20)  # type: ignore[arg-type]


async def test_a_connect_step_after_the_ice_transport_closed_is_not_an_error() -> None:
    """aiortc's connect task raised InvalidStateError, logged by asyncio as an ERROR, when the connection's
    ICE transport closed before the task ran (found by tests/interop/test_fuzz.py): now an INFO line."""
    hooks.install()
    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTransceiver("audio")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())  # schedules the connect step
        (transceiver,) = answerer.getTransceivers()
        await transceiver.receiver.transport.transport.stop()  # before the step runs
        await asyncio.sleep(0.2)
        gc.collect()  # "Task exception was never retrieved" is reported when the task is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
        await offerer.close()
        await answerer.close()
    assert [e for e in errors if "InvalidStateError" in repr(e.get("exception"))] == []


async def test_no_connect_step_outlives_its_closed_peer_connection() -> None:
    """A connect step still waiting when its PC closes was left pending; once the PC was collected (it is
    since 06459bc) asyncio logged "Task was destroyed but it is pending!" as an ERROR (found by
    tests/interop/test_fuzz.py). The hook holds the step while it runs and cancels it at close."""
    hooks.install()
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    offerer.addTransceiver("audio")
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())  # the offerer never gets the answer
    await asyncio.sleep(0.3)
    steps = [t for t, pc in hooks.rtcpeerconnection._connecting.items() if pc is answerer]
    assert len(steps) == 1 and not steps[0].done()  # ICE checks towards a peer that does not answer
    await answerer.close()
    await asyncio.sleep(0)
    assert steps[0].cancelled() or steps[0].done()
    assert answerer not in hooks.rtcpeerconnection._connecting.values()
    await offerer.close()


async def test_a_client_offered_receive_m_line_is_found_and_narrowed_to_one_codec() -> None:
    """/rtc/v1: the client offers recvonly m-lines; we answer one sendonly with only the track's codec."""
    client = RTCPeerConnection()
    client.addTransceiver("video", direction="recvonly")
    client.addTransceiver("audio", direction="sendonly")
    await client.setLocalDescription(await client.createOffer())
    server = RTCPeerConnection()
    await server.setRemoteDescription(client.localDescription)
    video, audio = server.getTransceivers()
    assert hooks.offered_to_receive(video) and not hooks.offered_to_receive(audio)
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    vp8 = [c for c in capabilities if c.mimeType == "video/VP8"] + [
        c for c in capabilities if c.mimeType == "video/rtx"
    ]
    assert len(hooks.negotiated_codecs(video)) > 2
    hooks.restrict_codecs(video, vp8)
    assert [c.mimeType for c in hooks.negotiated_codecs(video)] == ["video/VP8", "video/rtx"]
    video.direction = "sendonly"
    await server.setLocalDescription(await server.createAnswer())
    section = server.localDescription.sdp.split("m=video")[1].split("m=audio")[0]
    assert "a=sendonly" in section and "VP8/90000" in section and "H264" not in section
    await client.close()
    await server.close()


async def test_ice_restart_moves_media_to_a_pair_checked_with_the_new_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aioice has no ICE restart (a resumed session restarts it, as LiveKit's SDKs do): both sides take new
    credentials, the old pair carries data until a pair checked with them is nominated, and a check with
    the old credentials is refused afterwards."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", hooks.fixed_host_addresses(["127.0.0.1"]))
    client, server = await connected_ice_pair()
    try:
        old_credentials = (server.local_username, server.local_password)
        old_pairs = (client._nominated[1], server._nominated[1])

        hooks.restart_local_credentials(client)  # the client's ICE-restart offer...
        hooks.restart_local_credentials(server)  # ... and the SFU's answer
        assert (server.local_username, server.local_password) != old_credentials
        await client.send(b"on the old pair meanwhile")
        assert await asyncio.wait_for(server.recv(), 5) == b"on the old pair meanwhile"
        hooks.restart_checks(server, client.local_username, client.local_password)
        hooks.restart_checks(client, server.local_username, server.local_password)
        for _ in range(500):  # 10 s
            if client._nominated.get(1) is not old_pairs[0] and server._nominated.get(1) is not old_pairs[1]:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the restart nominated no new pair")

        await client.send(b"after the restart")
        assert await asyncio.wait_for(server.recv(), 5) == b"after the restart"
        await server.send(b"and back")
        assert await asyncio.wait_for(client.recv(), 5) == b"and back"
        stale = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
        stale.attributes["USERNAME"] = f"{old_credentials[0]}:{client.local_username}"
        stale.add_message_integrity(old_credentials[1].encode())
        pair = client._nominated[1]
        with pytest.raises(aioice.stun.TransactionError) as refused:
            await pair.protocol.request(stale, pair.remote_addr, retransmissions=0)
        assert refused.value.response is not None and refused.value.response.error_code == 401
    finally:
        await asyncio.gather(client.close(), server.close())


async def test_ice_connections_of_a_bundled_peer_connection() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    try:
        pc.addTransceiver("audio")
        pc.createDataChannel("x")
        (connection,) = hooks.ice_connections(pc)
        assert isinstance(connection, aioice.ice.Connection)
    finally:
        await pc.close()
