"""Size limits, matching LiveKit's server defaults, and the token bucket behind the rate limits."""

import time

MAX_SIGNAL_MESSAGE = 2 * 1024 * 1024  # one WebSocket frame from a client
# What the gateway holds for a client that does not read its WebSocket (beyond the kernel's and the
# transport's buffers): over either, the client is cut off, as one whose connection failed.
MAX_SIGNAL_BACKLOG = 8 * 1024 * 1024  # bytes of signalling waiting to be written
SIGNAL_SEND_TIMEOUT = 15.0  # seconds one message may wait for the socket to take it
MAX_METADATA = 512 * 1024  # participant or room metadata, bytes of UTF-8
MAX_ATTRIBUTES = 64 * 1024  # all attribute keys and values together
MAX_NAME = 256  # identity, participant name, room name (characters)
MAX_DATA_PACKET = 256 * 1024  # aiortc's SCTP message limit
RATE_BURST = 2.0  # seconds' worth of a rate limit that may come at once


def attributes_size(attributes: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in attributes.items())


def check_participant_fields(
    name: str | None = None, metadata: str | None = None, attributes: dict[str, str] | None = None
) -> str | None:
    """The reason a participant update is over a limit, or None when it fits."""
    if name is not None and len(name) > MAX_NAME:
        return f"name is longer than {MAX_NAME} characters"
    if metadata is not None and len(metadata.encode()) > MAX_METADATA:
        return f"metadata is larger than {MAX_METADATA} bytes"
    if attributes is not None and attributes_size(attributes) > MAX_ATTRIBUTES:
        return f"attributes are larger than {MAX_ATTRIBUTES} bytes"
    return None


class RateLimit:
    """A token bucket: `rate` per second sustained, RATE_BURST seconds' worth at once; rate 0: no limit."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = rate * RATE_BURST
        self._tokens = self._capacity
        self._at = time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        """Whether `amount` fits now (and is taken); what does not fit is not taken."""
        if not self._rate:
            return True
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True
