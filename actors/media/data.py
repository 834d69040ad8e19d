"""LiveKit's rules for client data packets: who sent it (never the client's word), where it goes, how.

Pure functions over the room directory, so they are tested without a network.
"""

from dataclasses import dataclass

from google.protobuf.message import DecodeError
from livekit.protocol import models

from actors.directory import Directory, Member
from actors.limits import MAX_DATA_PACKET

RELIABLE_LABEL = "_reliable"
LOSSY_LABEL = "_lossy"
DATA_LABELS = (RELIABLE_LABEL, LOSSY_LABEL)


class DataPacketRefused(Exception):
    """A packet we drop; `reason` is a short counter key (e.g. "oversized")."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class RoutedPacket:
    payload: bytes  # the sanitized DataPacket, serialized once for every recipient
    reliable: bool
    dest_sids: tuple[str, ...]
    sequence: int = 0  # the sender's: SDKs number reliable packets, and re-send them after a resume


def parse_packet(raw: bytes) -> models.DataPacket:
    if len(raw) > MAX_DATA_PACKET:
        raise DataPacketRefused("oversized", f"{len(raw)} bytes")
    packet = models.DataPacket()
    try:
        packet.ParseFromString(raw)
    except DecodeError as e:
        raise DataPacketRefused("unparseable", str(e)) from None
    return packet


def sanitize(packet: models.DataPacket, sender: Member, reliable: bool) -> None:
    """Stamp the sender from the directory and the kind from the channel the packet arrived on.

    The channel label decides because the Rust SDK sends `kind` inverted.
    """
    packet.participant_identity = sender.identity
    packet.participant_sid = sender.sid
    packet.kind = models.DataPacket.RELIABLE if reliable else models.DataPacket.LOSSY
    if packet.HasField("user"):
        packet.user.participant_identity = sender.identity
        packet.user.participant_sid = sender.sid


def destinations(packet: models.DataPacket, sender: Member, directory: Directory) -> tuple[str, ...]:
    """Sids of the recipients, in directory order; never the sender, unknown identities and sids skipped."""
    identities = set(packet.destination_identities)
    sids: set[str] = set()
    if packet.HasField("user"):
        identities.update(packet.user.destination_identities)
        sids.update(packet.user.destination_sids)
    targeted = bool(identities or sids)
    return tuple(
        m.sid
        for m in directory.members
        if m.sid != sender.sid and (not targeted or m.identity in identities or m.sid in sids)
    )


def route(raw: bytes, label: str, sender: Member, directory: Directory) -> RoutedPacket:
    """Apply every rule to a packet `sender` sent on its publisher channel `label`.

    Raises DataPacketRefused.
    """
    if not sender.can_publish_data:
        raise DataPacketRefused("no_permission", sender.identity)
    packet = parse_packet(raw)
    reliable = label == RELIABLE_LABEL
    sanitize(packet, sender, reliable)
    return RoutedPacket(
        packet.SerializeToString(), reliable, destinations(packet, sender, directory), packet.sequence
    )
