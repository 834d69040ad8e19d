"""The DTLS transport tap: TapDtlsTransport in place of aiortc's RTCDtlsTransport, per object."""

import logging
from collections.abc import Awaitable
from typing import Any

import pylibsrtp
from aiortc import clock
from aiortc.rtcdtlstransport import RTCDtlsTransport, State
from aiortc.rtp import (
    RtcpPacket,
    RtpPacket,
)

from actors.media import rtp
from actors.media.hooks.common import counters, handler_error, ratelog
from actors.media.hooks.rtcrtpreceiver import TapReceiver
from actors.tasks import spawn

log = logging.getLogger(__name__)


class TapDtlsTransport(RTCDtlsTransport):
    """Keeps the raw decrypted bytes, routes by MID as a fallback, admits only SSRCs its tap receivers
    accept, and never lets a bad packet end the transport: aiortc's receive loop closes the DTLS transport
    (the publisher's whole PC) on any exception out of these handlers.

    The hot path: the ICE connection hands an SRTP packet straight to `_receive_srtp` (no queue, no task
    switch), which unprotects it and gives a packet of a known SSRC of a tap receiver straight to that
    receiver, without aiortc's full parse (`RtpPacket.parse` copies the payload and decodes extensions)."""

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        pending = self._route_rtp(data, arrival_time_ms)
        if pending is not None:
            try:
                await pending
            except Exception as e:  # a bug, not bad input: count and log it, keep the PC
                handler_error(e)

    def _receive_srtp(self, data: bytes) -> bool:
        """An SRTP packet from the ICE connection's datagram callback, handled now: what aiortc's receive
        loop does with it (count, unprotect, handle). False (nothing done) when SRTP is not set up yet: the
        packet then takes aiortc's queue. Never raises (the callback's exception would close the socket)."""
        srtp = self._rx_srtp
        if srtp is None or self._state != State.CONNECTED:
            return False
        self._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        self._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        try:
            data = srtp.unprotect(data)
        except pylibsrtp.Error:  # replayed or forged: aiortc drops it too (and logs it at debug level)
            counters["dropped_srtp_unprotect"] += 1
            return True
        try:
            pending = self._route_rtp(data, None)
            if pending is not None:
                spawn(pending, "routing RTP from a new SSRC")
        except Exception as e:
            handler_error(e)
        return True

    def _route_rtp(self, data: bytes, arrival_time_ms: int | None) -> Awaitable[None] | None:
        """Hand one decrypted RTP packet to its receiver; returns what is left to await, if anything."""
        try:
            header = rtp.parse_header(data)
        except rtp.RtpError:
            counters["dropped_malformed_rtp"] += 1
            ratelog.warning("malformed_rtp", "malformed RTP dropped (%d bytes)", len(data))
            return None
        receiver = self._rtp_router.ssrc_table.get(header.ssrc)
        if isinstance(receiver, TapReceiver):
            try:
                receiver._tap_rtp(data, header)
            except Exception as e:
                handler_error(e)
            return None
        return self._route_new(data, clock.current_ms() if arrival_time_ms is None else arrival_time_ms)

    async def _route_new(self, data: bytes, arrival_time_ms: int) -> None:
        """A packet of an SSRC not routed to a tap receiver yet: aiortc's parse and router (which learns
        an SSRC by its payload type), the MID as a fallback, and the tap receiver's admission."""
        try:
            packet = RtpPacket.parse(data, self._rtp_header_extensions_map)
        except ValueError:
            counters["dropped_malformed_rtp"] += 1
            ratelog.warning("malformed_rtp", "malformed RTP dropped (%d bytes)", len(data))
            return
        packet.raw = data  # type: ignore[attr-defined]
        router = self._rtp_router
        known = router.ssrc_table.get(packet.ssrc)
        receiver = router.route_rtp(packet)  # learns an unknown SSRC when its payload type is unique
        if receiver is None and packet.extensions.mid is not None:
            receiver = router.mid_table.get(packet.extensions.mid)
            if receiver is not None:
                router.ssrc_table[packet.ssrc] = receiver
        if receiver is not None and receiver is not known:
            if isinstance(receiver, TapReceiver) and not receiver.admit(packet.ssrc):
                receiver = None
            if receiver is None:  # forget it again: the table must not grow with every SSRC an attacker sends
                if known is None:
                    router.ssrc_table.pop(packet.ssrc, None)
                else:
                    router.ssrc_table[packet.ssrc] = known
        if receiver is None:
            counters["dropped_unknown_ssrc"] += 1
            ratelog.warning("unknown_ssrc", "RTP from unknown SSRC %d dropped", packet.ssrc)
            return
        try:
            await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)
        except Exception as e:  # a bug, not bad input: count and log it, keep the PC
            handler_error(e)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            counters["dropped_malformed_rtcp"] += 1
            ratelog.warning("malformed_rtcp", "malformed RTCP dropped (%d bytes)", len(data))
            return
        for packet in packets:
            for recipient in self._rtp_router.route_rtcp(packet):
                try:
                    await recipient._handle_rtcp_packet(packet)
                except Exception as e:
                    counters["rtcp_handler_errors"] += 1
                    ratelog.warning(
                        "rtcp_handler", "RTCP %s dropped on an error: %r", type(packet).__name__, e
                    )


def tap_transport(transport: RTCDtlsTransport) -> None:
    if not isinstance(transport, TapDtlsTransport):
        transport.__class__ = TapDtlsTransport
    connection: Any = transport.transport._connection
    connection.sfu_tap = transport  # the ICE connection's shortcut to us (see install())
