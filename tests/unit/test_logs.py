"""Log lines with room, participant and track fields, as text or JSON (actors.logs)."""

import json
import logging
from collections.abc import Iterator

import pytest

from actors import logs


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_labels_give_the_fields() -> None:
    assert logs.from_label("room:demo") == ("demo", "", "")
    assert logs.from_label("participant:demo/alice") == ("demo", "alice", "")
    assert logs.from_label("track:demo/TR_abc") == ("demo", "", "TR_abc")


def test_json_lines_carry_the_fields_given_or_of_the_actor_at_work(
    root: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("info", json_lines=True, process="media:n/0")
    log = logging.getLogger("actors.test")
    log.info("alice published %s", "TR_x", extra=logs.fields("demo", "alice", "TR_x"))
    token = logs.current.set(logs.from_label("participant:demo/bob"))
    try:
        log.warning("no answer")
    finally:
        logs.current.reset(token)
    log.debug("not at info")
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first.pop("time").endswith("+00:00")
    assert first == {
        "level": "INFO", "logger": "actors.test", "message": "alice published TR_x",
        "room": "demo", "participant": "alice", "track": "TR_x", "worker": "media:n/0",
    }  # fmt: skip
    assert (second["room"], second["participant"], second["level"]) == ("demo", "bob", "WARNING")
    assert "track" not in second


def test_text_lines_stay_as_they_were(root: logging.Logger, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info")
    logging.getLogger("actors.test").info("demo: alice left", extra=logs.fields("demo", "alice"))
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith(" INFO actors.test: demo: alice left"), line
