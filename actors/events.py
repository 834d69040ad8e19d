"""What a Room tells its Participants (delivered in order through a SequencedInbox)."""

from dataclasses import dataclass

from livekit.protocol import models, rtc


@dataclass(frozen=True)
class ParticipantsChanged:
    participants: tuple[models.ParticipantInfo, ...]


@dataclass(frozen=True)
class RoomChanged:
    room: models.Room


@dataclass(frozen=True)
class SpeakersChanged:
    """The speakers whose level changed (a speaker who stopped: level 0, not active), loudest first; each
    participant is told about itself and those it subscribes to."""

    speakers: tuple[models.SpeakerInfo, ...]


@dataclass(frozen=True)
class QualityChanged:
    """Somebody's connection quality changed: everybody's, for each participant to pass on its own and
    those of the publishers it subscribes to."""

    qualities: tuple[rtc.ConnectionQualityInfo, ...]


RoomEvent = ParticipantsChanged | RoomChanged | SpeakersChanged | QualityChanged
