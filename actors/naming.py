"""Ray namespace and actor names, chosen so the Ray dashboard reads like the room."""

NAMESPACE = "raysfu"
MEDIA_PREFIX = "media:"


def room_actor(room: str) -> str:
    return f"room:{room}"


def participant_actor(room: str, identity: str, sid: str) -> str:
    # The sid keeps the name unique while a duplicate identity replaces an older session.
    return f"participant:{room}/{identity}/{sid}"


def track_actor(room: str, track_sid: str) -> str:
    return f"track:{room}/{track_sid}"


def media_actor(node: str, index: int) -> str:
    return f"{MEDIA_PREFIX}{node}/{index}"
