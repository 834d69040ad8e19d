"""Let LiveKit's protobuf messages cross Ray calls.

livekit-protocol generates its classes into modules named `models`, `rtc`, `room`, which pickle cannot
import, so Ray (cloudpickle) fails on them. Each message class gets a copyreg reducer that carries the
message's full protobuf name and its serialized bytes instead. Importing `actors` registers them.
"""

import copyreg
from collections.abc import Callable
from types import ModuleType

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from livekit.protocol import models, room, rtc

MODULES: tuple[ModuleType, ...] = (models, rtc, room)


def restore(full_name: str, data: bytes) -> Message:
    descriptor = models.DESCRIPTOR.pool.FindMessageTypeByName(full_name)
    cls = message_factory.GetMessageClass(descriptor)
    return cls.FromString(data)


def reduce(msg: Message) -> tuple[Callable[[str, bytes], Message], tuple[str, bytes]]:
    return restore, (msg.DESCRIPTOR.full_name, msg.SerializeToString())


def _classes(descriptor: Descriptor) -> list[type[Message]]:
    found = [message_factory.GetMessageClass(descriptor)]
    for nested in descriptor.nested_types:
        found.extend(_classes(nested))
    return found


def register() -> None:
    for module in MODULES:
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            for cls in _classes(descriptor):
                copyreg.pickle(cls, reduce)


register()
