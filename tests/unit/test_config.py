import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors.settings import MediaSettings, ParticipantLimits, RoomSettings, WebhookSettings
from gateway.config import (
    ConfigError,
    ServerConfig,
    dev_config,
    from_mapping,
    load,
    parse_keys,
)


def test_dev_config_stays_on_loopback_with_the_dev_key() -> None:
    cfg = dev_config()
    assert cfg.dev
    assert cfg.api_keys == {"devkey": "secret"}
    assert cfg.bind_addresses == ("127.0.0.1",)
    assert cfg.media.ice_addresses == ("127.0.0.1",)
    assert cfg.ws_url == "ws://127.0.0.1:7880"


def test_ws_url_names_loopback_for_a_wildcard_bind() -> None:
    assert ServerConfig(bind_addresses=("0.0.0.0",), port=7000).ws_url == "ws://127.0.0.1:7000"
    assert ServerConfig(bind_addresses=("10.0.0.5", "::1")).ws_url == "ws://10.0.0.5:7880"
    assert ServerConfig(bind_addresses=("::1",)).ws_url == "ws://[::1]:7880"


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
bind_addresses: [0.0.0.0, "::"]
prometheus_port: 6789
logging:
  level: warn
  json: true
rtc:
  port_range_start: 50000
  port_range_end: 50100
  node_ip: 10.1.2.3
room:
  empty_timeout: 60
  departure_timeout: 5
  max_participants: 50
webhook:
  api_key: prodkey
  urls: [https://hooks.example.org/livekit, http://10.0.0.9:8080/hook]
media:
  workers_per_node: 2
  participants_per_worker: 40
  stun_servers: ["stun.example.org:3478"]
  max_worker_cpu: 1
  room_gauges: true
"""


def test_load_reads_every_key_of_the_yaml_file(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, FULL_YAML), dev=False, environ={})
    assert cfg == ServerConfig(
        api_keys={"prodkey": "prodsecret"},
        bind_addresses=("0.0.0.0", "::"),
        port=7900,
        prometheus_port=6789,
        webhook=WebhookSettings(
            urls=("https://hooks.example.org/livekit", "http://10.0.0.9:8080/hook"),
            api_key="prodkey",
            api_secret="prodsecret",  # the key's, which signs the webhooks
        ),
        room=RoomSettings(empty_timeout=60, departure_timeout=5, max_participants=50),
        media=MediaSettings(
            ice_addresses=("10.1.2.3",),
            ice_port_range=(50000, 50100),
            participants_per_worker=40,
            workers_per_node=2,
            stun_servers=("stun.example.org:3478",),
            max_worker_cpu=1.0,
            room_gauges=True,
            log_level="warn",
            log_json=True,
        ),
    )


def test_media_ice_addresses_are_raysfus_own_spelling_of_node_ip(tmp_path: Path) -> None:
    cfg = load(
        write(tmp_path, "keys: {k: s}\nmedia:\n  ice_addresses: [10.1.2.3, '::1']\n"), dev=False, environ={}
    )
    assert cfg.media.ice_addresses == ("10.1.2.3", "::1")
    cfg = load(
        write(tmp_path, "keys: {k: s}\nrtc:\n  node_ip: '10.1.2.3,2001:db8::1'\n"), dev=False, environ={}
    )
    assert cfg.media.ice_addresses == ("10.1.2.3", "2001:db8::1")


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
    path = write(tmp_path, "keys: {prodkey: prodsecret}\n")
    cfg = load(path, dev=False, environ={"LIVEKIT_KEYS": "envkey: envsecret"})
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
    ("text", "message"),
    [
        ("- a list\n", "the top level must be a mapping, not a list"),
        ("keys: {k: s}\nroom: 5\n", "'room' must be a mapping, not an integer 5"),
        (
            "keys: {k: s}\nport: seventy\n",
            "'port' must be an integer from 1 to 65535, not a string 'seventy'",
        ),
        ("keys: {k: s}\nport: true\n", "'port' must be an integer from 1 to 65535, not a boolean True"),
        ("keys: {k: s}\nport: 70000\n", "'port' must be an integer from 1 to 65535"),
        (
            "keys: {k: s}\nroom:\n  max_participants: many\n",
            "'room.max_participants' must be an integer >= 0",
        ),
        ("keys: {k: s}\nroom:\n  empty_timeout: -1\n", "'room.empty_timeout' must be an integer >= 0"),
        ("keys: 'k'\n", "expected 'key: secret'"),
        ("keys: [k, s]\n", "'keys' must be a mapping of API key to secret, not a list"),
        ("keys: {k: s}\nprot: 7880\n", "unknown key 'prot'"),
        ("keys: {k: s}\nroom:\n  empty_timeuot: 5\n", "unknown key 'room.empty_timeuot'"),
        ("keys: {k: s}\nmedia:\n  workers: 2\n", "unknown key 'media.workers'"),
        ("keys: {k: s}\nmedia:\n  room_gauges: 1\n", "'media.room_gauges' must be"),
        (
            "keys: {k: s}\nredis:\n  address: r:6379\n",
            "'redis' is a LiveKit setting that raysfu does not implement",
        ),
        (
            "keys: {k: s}\nrtc:\n  tcp_port: 7881\n",
            "'rtc.tcp_port' is a LiveKit setting that raysfu does not",
        ),
        ("keys: {k: s}\nbind_address: 0.0.0.0\n", "unknown key 'bind_address'"),
        (
            "keys: {k: s}\nbind_addresses: 0.0.0.0\n",
            "'bind_addresses' must be a list of strings, not a string",
        ),
        ("keys: {k: s}\nbind_addresses: []\n", "'bind_addresses' must name at least one address"),
        ("keys: {k: s}\nbind_addresses: [localhost]\n", "'bind_addresses': 'localhost' is not an IP address"),
        ("keys: {k: s}\nrtc:\n  port_range_start: 50000\n", "must both be set, start <= end"),
        (
            "keys: {k: s}\nrtc:\n  port_range_start: 6\n  port_range_end: 5\n",
            "must both be set, start <= end",
        ),
        (
            "keys: {k: s}\nrtc:\n  port_range_end: 70000\n",
            "'rtc.port_range_end' must be an integer from 0 to",
        ),
        (
            "keys: {k: s}\nrtc:\n  udp_port: 7882\n",
            "'rtc.udp_port' (7882) cannot be honoured: aiortc gives each",
        ),
        ("keys: {k: s}\nrtc:\n  udp_port: 7882-7892\n", "'rtc.udp_port' ('7882-7892') cannot be honoured"),
        ("keys: {k: s}\nrtc:\n  node_ip: somewhere\n", "'rtc.node_ip': 'somewhere' is not an IP address"),
        ("keys: {k: s}\nrtc:\n  node_ip: 10.0.0.1,10.0.0.2\n", "at most one IPv4 and one IPv6 address"),
        ("keys: {k: s}\nrtc:\n  node_ip: 10.0.0.1\nmedia:\n  ice_addresses: [10.0.0.1]\n", "set one"),
        (
            "keys: {k: s}\nlogging:\n  level: verbose\n",
            "'logging.level' must be one of debug, info, warn, error",
        ),
        ("keys: {k: s}\nlogging:\n  json: yes please\n", "'logging.json' must be true or false"),
        ("keys: {k: s}\nlogging:\n  sample: true\n", "'logging.sample' is a LiveKit setting"),
        ("keys: {k: s}\nprometheus_port: '6789'\n", "'prometheus_port' must be an integer from 0 to 65535"),
        ("keys: {k: s}\nwebhook:\n  urls: http://a/\n", "'webhook.urls' must be a list of strings"),
        (
            "keys: {k: s}\nwebhook:\n  api_key: k\n  urls: [ftp://a/]\n",
            "'ftp://a/' is not an http:// or https://",
        ),
        (
            "keys: {k: s}\nwebhook:\n  urls: [http://a/]\n",
            "'webhook.api_key' (not set) must be one of the conf",
        ),
        (
            "keys: {k: s}\nwebhook:\n  api_key: x\n  urls: [http://a/]\n",
            "'webhook.api_key' 'x' must be one of",
        ),
        ("keys: {k: s}\nport: [\n", "not valid YAML"),
    ],
)
def test_bad_files_are_config_errors_naming_the_file_and_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, dev=False, environ={})
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load(str(tmp_path / "nope.yaml"), dev=False, environ={})


def test_the_webhook_key_may_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "webhook:\n  api_key: envkey\n  urls: [http://127.0.0.1:9/]\n")
    cfg = load(path, dev=False, environ={"LIVEKIT_KEYS": "envkey: envsecret"})
    assert cfg.webhook == WebhookSettings(
        urls=("http://127.0.0.1:9/",), api_key="envkey", api_secret="envsecret"
    )


def test_zero_and_empty_mean_unset_as_for_livekit(tmp_path: Path) -> None:
    text = "keys: {k: s}\nrtc:\n  port_range_start: 0\n  port_range_end: 0\n  udp_port: 0\n  node_ip: ''\n"
    cfg = load(write(tmp_path, text), dev=False, environ={})
    assert cfg.media == MediaSettings()


def test_serve_refuses_a_bad_file_with_one_line_before_starting(tmp_path: Path) -> None:
    """`raysfu serve --config bad.yaml`: exit 2 and one line on stderr, before Ray (which would take seconds
    and print its own lines) is even imported."""
    path = write(tmp_path, "keys: {k: s}\nrtc:\n  port_range_start: 50000\n  port_range_ned: 50100\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", path],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr == f"raysfu: {path}: unknown key 'rtc.port_range_ned'\n"
    assert done.stdout == ""


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
    cfg = from_mapping({"limit": {"subscription_limit_video": 4, "data_packets_per_second": 50}})
    assert cfg.media.limits.subscription_limit_video == 4
    assert cfg.media.limits.data_packets_per_second == 50.0
    assert cfg.media.limits.max_published_tracks == ParticipantLimits().max_published_tracks
    with pytest.raises(ConfigError, match=r"unknown key 'limit\.num_trakcs'"):
        from_mapping({"limit": {"num_trakcs": 1}})
