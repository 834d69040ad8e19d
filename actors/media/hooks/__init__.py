"""Every use of aiortc / aioice / pylibsrtp internals by the media plane (pinned aiortc==1.16.0,
aioice==0.13.0, pylibsrtp==1.0.0).

aiortc has no passthrough API, so the SFU swaps the class of three of its objects (per object, so that
ordinary aiortc peers in the same process, e.g. test clients, keep decoding and encoding):
- TapDtlsTransport (RTCDtlsTransport): keeps the decrypted RAW bytes, routes by MID when SSRC/PT routing
  fails, admits only SSRCs its tap receiver accepts, and counts what it drops; `_handle_rtp_data` and
  `_handle_rtcp_data` keep a handler's exception from closing the transport. Uses `_rtp_router` (route_rtp,
  route_rtcp, mid_table, ssrc_table) and `_rtp_header_extensions_map`. The hot path, `_receive_srtp`, takes
  an SRTP packet straight from the ICE connection's datagram callback (no queue, no task switch: what
  `_recv_next` does for it, with `_state`, `_rx_srtp`, `_RTCDtlsTransport__rx_bytes/__rx_packets`) and
  gives a packet of a known SSRC to its tap receiver without aiortc's `RtpPacket.parse`.
- TapReceiver (RTCRtpReceiver): `receive()` starts no decoder thread; `_tap_rtp` keeps RR statistics
  (`StreamStatistics.add` reads only the sequence number and timestamp, so it takes our parsed header),
  unwraps RTX, NACKs per SSRC, learns ssrc -> rid, and hands raw bytes to its sink; its StreamStatistics'
  `packets_expected` and `packets_received` give the connection quality score its loss. Uses the name-mangled
  `_RTCRtpReceiver__started/__codecs/__rtx_ssrc/__rtcp_task/__remote_streams/__rtcp_ssrc/__nack_generator/
  __lsr_time`,
  `_run_rtcp`, `_send_rtcp`, `_send_rtcp_pli`, `_send_rtcp_nack`, `_enabled`,
  `transport._register_rtp_receiver`.
- PassthroughSender (RTCRtpSender): no encoder; `send_now` sends rewritten bytes through its Egress: what
  `RTCDtlsTransport._send_rtp` does, without its four awaits (`_state`, `_tx_srtp` and its libsrtp session
  `_srtp`, called through pylibsrtp's cffi `_binding`, `_RTCDtlsTransport__tx_bytes/__tx_packets`, the ICE
  transport's `_connection._nominated` pair's `protocol.transport`, that asyncio transport's `_sock`, and
  `remote_addr`), and keeps `_RTCRtpSender__ntp_timestamp/__rtp_timestamp/__packet_count/__octet_count`
  true for its sender reports; `_run_rtp` replaced (sets `_RTCRtpSender__rtp_started/__rtp_exited`);
  `_handle_rtcp_packet` serves NACKs from its own history (RTX with `_rtx_ssrc`), passes PLI/FIR and
  REMB to its listener and keeps the subscriber's last receiver report (RtcpReceiverInfo). Uses `_ssrc`,
  `_stream_id`, `_track_id`.
Also: `RTCRtpTransceiver._codecs/_headerExtensions` (negotiated parameters, rid extension patch, codecs
narrowed for a client-offered m-line: restrict_codecs, with `aiortc.rtcpeerconnection.
filter_preferred_codecs`), `RTCRtpTransceiver._offerDirection` (offered_to_receive),
`RTCPeerConnection._RTCPeerConnection__connect` (starts senders added by a renegotiation; wrapped
process-wide by install() so that a connection closed meanwhile is not an error),
`RTCPeerConnection._RTCPeerConnection__sctp._bundled` (fix_sctp_bundle),
`aiortc.rtp.DYNAMIC_PAYLOAD_TYPES` and `aiortc.codecs.CODECS` (install()), `aioice.ice.Connection.
data_received` and its `_queue` (bounded, and short-cut to the tap transport, by install()),
`aioice.ice.StunProtocol.datagram_received` (media skips its STUN parse attempt) with its `receiver` and
`local_candidate`.
`aioice.ice.get_host_addresses` (host candidates on the configured addresses only),
`aioice.ice.Connection.get_component_candidates` (on the configured ports: with `_protocols`,
`stun_server`, `turn_server`, `StunProtocol`, `candidate_foundation`, `candidate_priority`,
`server_reflexive_candidate` and `aioice.turn.UDP_SOCKET_BUFFER_SIZE`) and
`aioice.ice.Connection.query_consent` (RFC 7675 consent freshness, with `_nominated` and
`_query_consent_task`) are replaced process-wide.
ICE restart, which aioice lacks (restart_local_credentials, restart_checks): the PC's ICE transports
(`_RTCPeerConnection__iceTransports`, their `_connection`), the connection's `_local_username/_password`,
`remote_username/password`, `_check_list`, `_check_list_done`, `_check_list_state`, `_nominating`,
`_remote_candidates`, `_pair_remote_candidate`, `_unfreeze_initial`, `_check_periodic`, `_closing`.
tests/unit/test_hooks.py and tests/unit/test_ice.py check each of these names so that an upgrade fails
loudly.

One module per aiortc object each piece stands in for: rtcdtlstransport (TapDtlsTransport), rtcrtpreceiver
(TapReceiver), rtcrtpsender (PassthroughSender, Egress), rtcpeerconnection (transceivers, the connect step,
SCTP bundling), aioice (the ICE patches), process (`install`), common (drop counters, the sink protocol).
"""

from actors.media.hooks.aioice import (
    MAX_ICE_QUEUE,
    fixed_host_addresses,
    query_consent,
    restart_checks,
    restart_local_credentials,
    restrict_host_addresses,
    restrict_host_ports,
    use_rfc_consent_freshness,
)
from actors.media.hooks.common import RtpSink, counters
from actors.media.hooks.process import install
from actors.media.hooks.rtcdtlstransport import TapDtlsTransport, tap_transport
from actors.media.hooks.rtcpeerconnection import (
    add_header_extensions,
    fix_sctp_bundle,
    ice_connections,
    negotiated_codecs,
    negotiated_extensions,
    offered_to_receive,
    restrict_codecs,
    start_transceivers,
)
from actors.media.hooks.rtcrtpreceiver import MAX_LEARNED_SSRCS, TapReceiver, tap_receiver
from actors.media.hooks.rtcrtpsender import (
    Egress,
    PassthroughSender,
    SenderListener,
    label_sender,
    passthrough_sender,
)

__all__ = [
    "MAX_ICE_QUEUE",
    "MAX_LEARNED_SSRCS",
    "Egress",
    "PassthroughSender",
    "RtpSink",
    "SenderListener",
    "TapDtlsTransport",
    "TapReceiver",
    "add_header_extensions",
    "counters",
    "fix_sctp_bundle",
    "fixed_host_addresses",
    "ice_connections",
    "install",
    "label_sender",
    "negotiated_codecs",
    "negotiated_extensions",
    "offered_to_receive",
    "passthrough_sender",
    "query_consent",
    "restart_checks",
    "restart_local_credentials",
    "restrict_codecs",
    "restrict_host_addresses",
    "restrict_host_ports",
    "start_transceivers",
    "tap_receiver",
    "tap_transport",
    "use_rfc_consent_freshness",
]
