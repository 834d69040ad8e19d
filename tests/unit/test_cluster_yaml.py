"""cluster.yaml is a valid Ray cluster launcher config that starts raysfu on every node (checked offline)."""

from pathlib import Path
from typing import Any

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).parents[2] / "cluster.yaml"


def load() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(CLUSTER_YAML.read_text())
    return config


def test_cluster_yaml_passes_ray_validation() -> None:
    validate_config(prepare_config(load()))


def test_every_node_starts_a_raysfu_server_on_the_cluster() -> None:
    config = load()
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        serve = [c for c in commands if "raysfu serve" in c]
        assert len(serve) == 1, commands
        assert "--address auto --config ~/raysfu.yaml" in serve[0]
        assert "ray start" in " ".join(commands[: commands.index(serve[0])])


def test_ray_token_authentication_is_on_everywhere() -> None:
    config = load()
    assert config["file_mounts"]["~/.ray/auth_token"] == "./ray_auth_token"
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        for command in commands:
            if "ray start" in command or "raysfu serve" in command:
                assert command.startswith("RAY_AUTH_MODE=token "), command
