"""Logging for the gateway and the media workers: text lines, or JSON lines (LiveKit's `logging.json`).

A line about a room, a participant or a track carries them as fields (`room`, `participant` = its
identity, `track` = its SID): given with `extra=fields(...)` where the line is written, or else from the
hosted actor at work (actors.hosting sets `current` for each message it delivers, and the tasks started
while handling it inherit it). Text lines are FORMAT, whose messages name them where they matter (the
events': "demo: alice published TR_x (video/VP8)"); tests and scripts read those, so no fields are
appended. JSON lines are one object each: time (UTC, ISO 8601), level, logger, message, the fields, the
process (`worker`: the media worker's name, absent in the gateway) and `exception` (a traceback) when
there is one.
"""

import contextvars
import json
import logging
from datetime import UTC, datetime

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("room", "participant", "track")

# LiveKit's `logging.level` values, as Python's logging levels.
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}

# The hosted actor at work: (room, participant identity, track SID), each "" when it does not apply.
current: contextvars.ContextVar[tuple[str, str, str]] = contextvars.ContextVar(
    "raysfu_log_fields", default=("", "", "")
)


def fields(room: str = "", participant: str = "", track: str = "") -> dict[str, str]:
    """`extra` for a log call about this room, participant and track."""
    return {"room": room, "participant": participant, "track": track}


def from_label(label: str) -> tuple[str, str, str]:
    """The fields of a hosted actor's label (actors.naming): `room:R`, `participant:R/I`, `track:R/TR_x`."""
    kind, _, rest = label.partition(":")
    room, _, member = rest.rpartition("/") if kind in ("participant", "track") else (rest, "", "")
    return (room, member if kind == "participant" else "", member if kind == "track" else "")


class _Fields(logging.Filter):
    """Gives every record its room, participant and track ("" when unknown) and the process's name."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        context = current.get()
        for name, value in zip(FIELDS, context, strict=True):
            if not getattr(record, name, ""):
                setattr(record, name, value)
        record.worker = self.process
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*FIELDS, "worker"):
            if getattr(record, name, ""):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: str = "info", json_lines: bool = False, process: str = "") -> None:
    """The root logger at `level` (a LOG_LEVELS key), text or JSON lines on stderr; `process` names the
    media worker in JSON lines. With JSON, warnings (the `warnings` module's) and Ray's own lines are
    logged through it too, as JSON lines."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "raysfu", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler()
    handler.raysfu = True  # type: ignore[attr-defined]
    handler.addFilter(_Fields(process))
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(LOG_LEVELS[level])
    logging.captureWarnings(json_lines)
    if json_lines:  # Ray's own logger prints text lines through a handler of its own: ours instead
        ray_logger = logging.getLogger("ray")
        ray_logger.handlers.clear()
        ray_logger.propagate = True
