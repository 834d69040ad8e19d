import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.settings import MediaSettings, ParticipantLimits, RoomSettings
from gateway.config import ConfigError, ServerConfig, dev_config, from_mapping, load, parse_keys


def test_dev_config_stays_on_loopback_with_the_dev_key() -> None:
    cfg = dev_config()
    assert cfg.dev
    assert cfg.api_keys == {"devkey": "secret"}
    assert cfg.host == "127.0.0.1"
    assert cfg.media.ice_addresses == ("127.0.0.1",)
    assert cfg.ws_url == "ws://127.0.0.1:7880"


def test_ws_url_names_loopback_for_a_wildcard_bind() -> None:
    assert ServerConfig(host="0.0.0.0", port=7000).ws_url == "ws://127.0.0.1:7000"
    assert ServerConfig(host="10.0.0.5").ws_url == "ws://10.0.0.5:7880"


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("key1: secret1", {"key1": "secret1"}),
        ("key1: secret1, key2: secret2", {"key1": "secret1", "key2": "secret2"}),
        ("key1: secret1\nkey2:secret2\n", {"key1": "secret1", "key2": "secret2"}),
        ("k: a:b", {"k": "a:b"}),
        ("", {}),
    ],
)
def test_parse_keys(text: str, keys: dict[str, str]) -> None:
    assert parse_keys(text) == keys


@pytest.mark.parametrize("text", ["key1", "key1:", ": secret", "a: b, c"])
def test_parse_keys_rejects_bad_entries(text: str) -> None:
    with pytest.raises(ConfigError, match="expected 'key: secret'"):
        parse_keys(text)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "raysfu.yaml"
    path.write_text(text)
    return str(path)


FULL_YAML = """
keys:
  prodkey: prodsecret
port: 7900
bind_address: 0.0.0.0
room:
  empty_timeout: 60
  departure_timeout: 5
  max_participants: 50
media:
  ice_addresses: [10.1.2.3]
  workers_per_node: 2
  participants_per_worker: 40
  stun_servers: ["stun.example.org:3478"]
"""


def test_load_reads_every_key_of_the_yaml_file(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, FULL_YAML), dev=False, environ={})
    assert cfg == ServerConfig(
        api_keys={"prodkey": "prodsecret"},
        host="0.0.0.0",
        port=7900,
        room=RoomSettings(empty_timeout=60, departure_timeout=5, max_participants=50),
        media=MediaSettings(
            ice_addresses=("10.1.2.3",),
            participants_per_worker=40,
            workers_per_node=2,
            stun_servers=("stun.example.org:3478",),
        ),
    )


def test_load_keeps_defaults_for_missing_keys(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "keys: 'k: s'\nroom:\n  departure_timeout: 3\n"), dev=False, environ={})
    assert cfg.api_keys == {"k": "s"}
    assert cfg.port == 7880
    assert cfg.room == RoomSettings(departure_timeout=3)
    assert cfg.media == MediaSettings()


def test_a_file_overrides_dev_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "port: 7001\n"), dev=True, environ={})
    assert cfg.dev
    assert cfg.port == 7001
    assert cfg.api_keys == {"devkey": "secret"}
    assert cfg.media.ice_addresses == ("127.0.0.1",)


def test_livekit_keys_env_overrides_the_file(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, FULL_YAML), dev=False, environ={"LIVEKIT_KEYS": "envkey: envsecret"})
    assert cfg.api_keys == {"envkey": "envsecret"}


def test_livekit_api_key_and_secret_env() -> None:
    env = {"LIVEKIT_API_KEY": "apikey", "LIVEKIT_API_SECRET": "apisecret"}
    assert load(None, dev=False, environ=env).api_keys == {"apikey": "apisecret"}


def test_livekit_keys_wins_over_api_key_and_secret() -> None:
    env = {"LIVEKIT_KEYS": "a: b", "LIVEKIT_API_KEY": "c", "LIVEKIT_API_SECRET": "d"}
    assert load(None, dev=False, environ=env).api_keys == {"a": "b"}


def test_no_keys_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no API keys"):
        load(None, dev=False, environ={"LIVEKIT_API_KEY": "only-the-key"})


@pytest.mark.parametrize(
    "text",
    [
        "- a list\n",  # not a mapping
        "keys: {k: s}\nroom: 5\n",  # a section that is not a mapping
        "keys: {k: s}\nport: seventy\n",
        "keys: {k: s}\nroom:\n  max_participants: many\n",
        "keys: 'k'\n",
    ],
)
def test_bad_files_are_config_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load(write(tmp_path, text), dev=False, environ={})


# `raysfu serve --dev`, up to the point where it starts Ray: in a fresh interpreter (Ray decides which address
# is its own when imported), with gateway.server replaced by a probe that asks Ray for its node address.
_DEV_PROBE = """
import sys, types
probe = types.ModuleType("gateway.server")
def serve(config):
    from ray._private import ray_constants, services
    print("CLUSTER", ray_constants.ENABLE_RAY_CLUSTER, "NODE_IP", services.get_node_ip_address())
    return 0
probe.serve = serve
sys.modules["gateway.server"] = probe
from gateway import cli
sys.exit(cli.main(["serve", "--dev"]))
"""


def test_serve_dev_keeps_ray_on_loopback() -> None:
    """Ray swaps 127.0.0.1 for the machine's LAN address and listens on every interface unless told when it is
    imported (ray_constants.ENABLE_RAY_CLUSTER, Ray pinned); `raysfu serve --dev` must tell it first. The
    decision is checked, not only the address: inside the test network namespace the swap finds no route
    and falls back to loopback by itself, which would hide a regression there."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run(
        [sys.executable, "-c", _DEV_PROBE], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CLUSTER False NODE_IP 127.0.0.1" in done.stdout


def test_limit_section_sets_participant_limits() -> None:
    cfg = from_mapping({"limit": {"subscription_limit_video": 4, "data_packets_per_second": "50"}})
    assert cfg.media.limits.subscription_limit_video == 4
    assert cfg.media.limits.data_packets_per_second == 50.0
    assert cfg.media.limits.max_published_tracks == ParticipantLimits().max_published_tracks
    with pytest.raises(ConfigError, match="unknown limit settings: num_trakcs"):
        from_mapping({"limit": {"num_trakcs": 1}})
