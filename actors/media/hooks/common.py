"""What the hooks share: their drop counters and rate-limited log, and the tap receivers' sink."""

import logging
from collections import Counter
from typing import Protocol

from actors.media import rtp
from actors.media.ratelog import RateLimitedLog

log = logging.getLogger("actors.media.hooks")
ratelog = RateLimitedLog(log)

# Process-wide drop counters of the hooks (the worker adds them to its stats).
counters: Counter[str] = Counter()


class RtpSink(Protocol):
    """Where a tap receiver delivers decrypted, RTX-unwrapped RTP (raw bytes, header parsed)."""

    def deliver(
        self, raw: bytes, header: rtp.RtpHeader, rid: str | None, extensions: dict[int, bytes] | None = None
    ) -> None:
        """One packet, synchronously (the hot path has no awaits); `extensions` when already read."""


def handler_error(e: Exception) -> None:
    counters["rtp_handler_errors"] += 1
    ratelog.warning("rtp_handler", "RTP packet dropped on an error: %r", e)
