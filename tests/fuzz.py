"""Hypothesis strategies for LiveKit's protobuf messages, filled from their descriptors, and for what a
client could send instead of them (mutated bytes, random bytes, text, mutated SDP).

Every field of a message may be set, to any value of its type (and enums to values outside the enum, which
proto3 keeps); nested messages down to MAX_DEPTH. The strategies know nothing about raysfu: they are what a
buggy or hostile client may put on the wire.
"""

from typing import Any

from aiortc import RTCPeerConnection
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

MAX_DEPTH = 3
MAX_REPEATED = 3

_INTS: dict[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}

# Short text most of the time (names, sids, identities), now and then long enough to hit size limits.
_TEXT = st.one_of(
    st.sampled_from(["", "PA_x", "TR_x", "alice", "camera", "*"]),
    st.text(max_size=40),
    st.text(max_size=3000),
)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INTS:
        low, high = _INTS[kind]
        return st.one_of(st.sampled_from([0, 1, -1 if low < 0 else 2, high]), st.integers(low, high))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_STRING:
        return _TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=300)
    if kind == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(values), st.integers(-3, 200))
    raise TypeError(f"no strategy for field {field.full_name} of type {kind}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def fill(draw: st.DrawFn, message: Message, depth: int = 0) -> Message:
    """Sets a random selection of `message`'s fields to random values (in place); returns it."""
    for field in message.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        value = getattr(message, field.name)
        repeated = field.is_repeated
        if _is_map(field):
            key_field, value_field = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                continue
            entries = draw(st.dictionaries(_scalar(key_field), _scalar(value_field), max_size=MAX_REPEATED))
            for k, v in entries.items():
                value[k] = v
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= MAX_DEPTH:
                continue
            if repeated:
                for _ in range(draw(st.integers(0, MAX_REPEATED))):
                    fill(draw, value.add(), depth + 1)
            else:
                fill(draw, value, depth + 1)
                value.SetInParent()
        elif repeated:
            value.extend(draw(st.lists(_scalar(field), max_size=MAX_REPEATED)))
        else:
            setattr(message, field.name, draw(_scalar(field)))
    return message


@st.composite
def messages(draw: st.DrawFn, cls: type[Message]) -> Message:
    """A `cls` with random fields."""
    return fill(draw, cls())


@st.composite
def oneof_messages(draw: st.DrawFn, cls: type[Message], oneof: str) -> Message:
    """A `cls` with exactly one member of its oneof `oneof` set (to a random value): a SignalRequest of
    each kind, as an SDK would send one."""
    member = draw(st.sampled_from(list(cls.DESCRIPTOR.oneofs_by_name[oneof].fields)))
    message = cls()
    if member.type == FieldDescriptor.TYPE_MESSAGE:
        fill(draw, getattr(message, member.name), 1).SetInParent()
    else:
        setattr(message, member.name, draw(_scalar(member)))
    return message


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with bytes flipped, cut short, or grown at a random place."""
    raw = bytearray(data)
    kind = draw(st.sampled_from(["flip", "truncate", "insert"]))
    if kind == "flip" and raw:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] ^= draw(st.integers(1, 255))
    elif kind == "truncate" and raw:
        del raw[draw(st.integers(0, len(raw) - 1)) :]
    else:
        i = draw(st.integers(0, len(raw)))
        raw[i:i] = draw(st.binary(min_size=1, max_size=32))
    return bytes(raw)


@st.composite
def mutated_sdp(draw: st.DrawFn, sdp: str) -> str:
    """A real SDP with lines dropped, duplicated, garbled or moved."""
    lines = sdp.splitlines()
    for _ in range(draw(st.integers(1, 6))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["drop", "duplicate", "garble", "move", "truncate"]))
        if kind == "drop":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "garble":
            lines[i] = draw(st.sampled_from(lines[i].split(" ") or [""])) + draw(st.text(max_size=20))
        elif kind == "move":
            lines.insert(draw(st.integers(0, len(lines) - 1)), lines.pop(i))
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    return "\r\n".join(lines) + "\r\n"


async def client_offer() -> str:
    """An offer as a client makes one (audio, video and a data channel; aiortc, host candidates): the real
    SDP that mutated_sdp starts from."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.addTransceiver("video")
    pc.createDataChannel("_reliable")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp
