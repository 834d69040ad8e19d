"""Size limits, matching LiveKit's server defaults."""

MAX_SIGNAL_MESSAGE = 2 * 1024 * 1024  # one WebSocket frame from a client
MAX_METADATA = 512 * 1024  # participant or room metadata, bytes of UTF-8
MAX_ATTRIBUTES = 64 * 1024  # all attribute keys and values together
MAX_NAME = 256  # identity, participant name, room name (characters)
MAX_DATA_PACKET = 256 * 1024  # aiortc's SCTP message limit


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
