from pathlib import Path

import pytest

from actors.settings import MediaSettings, RoomSettings
from gateway.config import ConfigError, ServerConfig, dev_config, load, parse_keys


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
