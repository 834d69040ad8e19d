"""Ray namespace and names, chosen so the Ray dashboard reads like the room.

The media workers are Ray actors named `media:<node>/<n>`; the rooms, participants and tracks they host
name the Ray calls made to them after these labels (`room:demo.join`; actors.hosting).
"""

NAMESPACE = "raysfu"
MEDIA_PREFIX = "media:"


def room_label(room: str) -> str:
    return f"room:{room}"


def participant_label(room: str, identity: str) -> str:
    return f"participant:{room}/{identity}"


def track_label(room: str, track_sid: str) -> str:
    return f"track:{room}/{track_sid}"


def media_actor(node: str, index: int) -> str:
    return f"{MEDIA_PREFIX}{node}/{index}"
