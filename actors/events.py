"""What a Room tells its Participants (delivered in order through a SequencedInbox)."""

from dataclasses import dataclass

from livekit.protocol import models


@dataclass(frozen=True)
class ParticipantsChanged:
    participants: tuple[models.ParticipantInfo, ...]


@dataclass(frozen=True)
class RoomChanged:
    room: models.Room


RoomEvent = ParticipantsChanged | RoomChanged
