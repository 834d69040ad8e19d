"""The room directory that a Room pushes to every MediaWorker hosting its participants.

Workers route data packets with it, without a Ray call per packet to the Room.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    sid: str
    identity: str
    worker: str  # the MediaWorker actor name hosting this participant's peer connections
    can_publish_data: bool


@dataclass(frozen=True)
class Directory:
    room: str
    version: int  # increases with every membership or permission change; workers keep the newest
    members: tuple[Member, ...]

    def by_sid(self) -> dict[str, Member]:
        return {m.sid: m for m in self.members}
