"""raysfu's Ray actors: Room, Participant, MediaWorker and what they share."""

from actors import wire  # noqa: F401  (registers the pickling of LiveKit's protobuf messages)
