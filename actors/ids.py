"""Server-generated ids in LiveKit's shape: a prefix plus 12 base57 characters.

The SDKs check the prefixes (`RM_`, `PA_`, `TR_`): a sid without them fails the join.
"""

import secrets

# LiveKit's base57 alphabet: no 0/O, 1/I/l look-alikes.
BASE57 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

ROOM_PREFIX = "RM_"
PARTICIPANT_PREFIX = "PA_"
TRACK_PREFIX = "TR_"


def new_sid(prefix: str, length: int = 12) -> str:
    return prefix + "".join(secrets.choice(BASE57) for _ in range(length))


def room_sid() -> str:
    return new_sid(ROOM_PREFIX)


def participant_sid() -> str:
    return new_sid(PARTICIPANT_PREFIX)


def track_sid() -> str:
    return new_sid(TRACK_PREFIX)
