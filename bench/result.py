"""The JSON result of a scenario: required keys, and how it is written."""

import json
import time
from pathlib import Path
from typing import Any

from bench import machine

REQUIRED_KEYS: tuple[str, ...] = (
    "scenario",
    "commit",
    "machine",
    "cpu_us_per_forwarded_packet",
    "forwarded_pps",
    "loss_pct",
    "latency_ms_p50",
    "latency_ms_p99",
    "join_ms_p50",
    "join_ms_p99",
    "pss_mb_per_participant",
)


class ScenarioError(Exception):
    """A scenario could not produce figures; the message says why (never fake numbers)."""


def new_result(scenario: str, **params: Any) -> dict[str, Any]:
    """A result with every required key present (None = not measured in this scenario)."""
    result: dict[str, Any] = {key: None for key in REQUIRED_KEYS}
    result.update(
        scenario=scenario,
        commit=machine.commit(),
        machine=machine.describe(),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        params=params,
        notes=[],
    )
    return result


def check(result: dict[str, Any]) -> list[str]:
    """What is wrong with a result's shape (empty when fine)."""
    problems = [f"missing key {key!r}" for key in REQUIRED_KEYS if key not in result]
    for key in REQUIRED_KEYS[3:]:
        value = result.get(key)
        if value is not None and not isinstance(value, int | float):
            problems.append(f"{key} is {type(value).__name__}, not a number or null")
    if not isinstance(result.get("machine"), dict):
        problems.append("machine is not an object")
    return problems


def write(result: dict[str, Any], path: Path | None) -> str:
    text = json.dumps(result, indent=2, sort_keys=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return text
