"""Server configuration: `--dev` defaults, a YAML file, and the environment.

The file takes LiveKit's `livekit.yaml` keys wherever they mean the same thing in raysfu (`port`,
`bind_addresses`, `keys`, `rtc`, `room`, `webhook`, `prometheus_port`, `logging`), so one file serves both,
and raysfu's own (`media`) beside them. Every key is checked before anything starts: an unknown key, a
LiveKit key raysfu does not implement, or a value of the wrong type is a ConfigError naming the key.
"""

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from actors.logs import LOG_LEVELS
from actors.settings import MediaSettings, ParticipantLimits, RoomSettings, WebhookSettings

DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"

# LiveKit keys that raysfu does not implement: named as such rather than as unknown. A file that sets one
# is refused, so that a setting is never silently without effect.
LIVEKIT_ONLY = {
    "": {
        "prometheus", "debug_handler", "redis", "audio", "video", "turn", "ingress", "sip", "node_selector",
        "key_file", "region", "signal_relay", "psrpc", "log_level", "agents", "development",
        "metric", "trace", "node_stats", "enable_data_tracks", "enable_participant_data_blob", "api",
    },
    "rtc.": {
        "tcp_port", "use_stun_port_as_ice", "additional_host_ips", "stun_servers", "use_external_ip",
        "require_ipv4", "skip_external_ip_validation", "advertise_internal_ip", "use_ice_lite", "interfaces",
        "ips", "enable_loopback_candidate", "use_mdns", "external_ip_only", "batch_io", "sctp_min_cwnd",
        "sctp_fast_rtx_wnd", "sctp_cwnd_ca_step", "host_acceptance_min_wait", "srflx_acceptance_min_wait",
        "prflx_acceptance_min_wait", "relay_acceptance_min_wait", "force_tcp", "turn_servers", "enable_warp",
        "strict_acks", "packet_buffer_size", "packet_buffer_size_video", "packet_buffer_size_audio",
        "pli_throttle", "congestion_control", "allow_tcp_fallback", "tcp_fallback_rtt_threshold",
        "allow_udp_unstable_fallback", "reconnect_on_publication_error", "reconnect_on_subscription_error",
        "reconnect_on_data_channel_error", "data_channel_max_buffered_amount", "datachannel_slow_threshold",
        "datachannel_lossy_target_latency", "datachannel_data_track_target_latency", "forward_stats",
        "enable_rtp_stream_restart_detection",
    },
    "room.": {
        "auto_create", "enabled_codecs", "enable_remote_unmute", "playout_delay", "sync_streams",
        "create_room_timeout", "create_room_attempts", "enable_full_room_in_webhooks",
        "update_batch_target_size", "max_metadata_size", "max_room_name_length",
        "max_participant_identity_length", "room_configurations",
    },
    "webhook.": {"url_notifier", "resource_url_notifier", "filter_params"},
    "limit.": {
        "num_tracks", "bytes_per_sec", "max_metadata_size", "max_attributes_size", "max_room_name_length",
        "max_participant_identity_length", "max_participant_name_length",
    },
    "logging.": {"sample", "component_levels", "sample_initial", "sample_interval", "pion_level"},
}  # fmt: skip


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerConfig:
    api_keys: dict[str, str] = field(default_factory=dict)
    bind_addresses: tuple[str, ...] = ("127.0.0.1",)
    port: int = 7880
    dev: bool = False
    ray_address: str | None = None  # None: start a local Ray
    dashboard_port: int = 8265
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    prometheus_port: int = 0  # 0: none
    room: RoomSettings = field(default_factory=RoomSettings)
    media: MediaSettings = field(default_factory=MediaSettings)

    @property
    def ws_url(self) -> str:
        host = self.bind_addresses[0]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"ws://{host}:{self.port}"


def dev_config() -> ServerConfig:
    """The embedded default: everything on loopback, API key `devkey` / secret `secret`."""
    return ServerConfig(
        api_keys={DEV_API_KEY: DEV_API_SECRET},
        dev=True,
        media=MediaSettings(ice_addresses=("127.0.0.1",)),
    )


def parse_keys(text: str) -> dict[str, str]:
    """LiveKit's `LIVEKIT_KEYS` format: `key1: secret1, key2: secret2`."""
    keys: dict[str, str] = {}
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        key, sep, secret = part.partition(":")
        if not sep or not key.strip() or not secret.strip():
            raise ConfigError(f"bad key entry {part.strip()!r}: expected 'key: secret'")
        keys[key.strip()] = secret.strip()
    return keys


T = TypeVar("T")


class _Section:
    """One mapping of the file; each getter checks its key's type, `finish` refuses the keys nobody read."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            where = f"'{path.rstrip('.')}'" if path else "the top level"
            raise ConfigError(f"{where} must be a mapping, not {_kind(data)} {data!r}")
        self._data: dict[Any, Any] = data
        self._path = path
        self._read: set[str] = set()

    def _get(self, key: str, default: T, check: Callable[[object], T | None], expected: str) -> T:
        self._read.add(key)
        if key not in self._data:
            return default
        value = self._data[key]
        checked = check(value)
        if checked is None:
            raise ConfigError(f"'{self._path}{key}' must be {expected}, not {_kind(value)} {value!r}")
        return checked

    def integer(self, key: str, default: int, *, low: int = 0, high: int | None = None) -> int:
        def check(v: object) -> int | None:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)
            return v if ok else None  # type: ignore[return-value]

        bounds = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        return self._get(key, default, check, bounds)

    def number(self, key: str, default: float) -> float:
        def check(v: object) -> float | None:
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 else None

        return self._get(key, default, check, "a number >= 0")

    def boolean(self, key: str, default: bool) -> bool:
        return self._get(key, default, lambda v: v if isinstance(v, bool) else None, "true or false")

    def string(self, key: str, default: str) -> str:
        return self._get(key, default, lambda v: v if isinstance(v, str) else None, "a string")

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        def check(v: object) -> tuple[str, ...] | None:
            ok = isinstance(v, list) and all(isinstance(s, str) for s in v)
            return tuple(v) if ok else None  # type: ignore[arg-type]

        return self._get(key, default, check, "a list of strings")

    def raw(self, key: str) -> object:
        """The value as the file has it (None when absent), for keys with a grammar of their own."""
        self._read.add(key)
        return self._data.get(key)

    def section(self, key: str) -> "_Section":
        self._read.add(key)
        return _Section(self._data.get(key), f"{self._path}{key}.")

    def finish(self) -> None:
        for key in self._data:
            if key in self._read:
                continue
            name = f"{self._path}{key}"
            if key in LIVEKIT_ONLY.get(self._path, ()):
                raise ConfigError(f"'{name}' is a LiveKit setting that raysfu does not implement")
            raise ConfigError(f"unknown key '{name}'")


def _kind(value: object) -> str:
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer"}
    return {**kinds, float: "a number", type(None): "empty"}.get(type(value), type(value).__name__)


def _ip(key: str, text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ConfigError(f"'{key}': {text!r} is not an IP address") from None


def _keys(section: _Section) -> dict[str, str] | None:
    keys = section.raw("keys")
    if keys is None:
        return None
    if isinstance(keys, str):
        return parse_keys(keys)
    if isinstance(keys, dict) and all(
        isinstance(k, str) and isinstance(v, str | int) for k, v in keys.items()
    ):
        return {k: str(v) for k, v in keys.items()}
    raise ConfigError(f"'keys' must be a mapping of API key to secret, not {_kind(keys)}")


def _node_ip(rtc: _Section) -> tuple[str, ...]:
    """LiveKit's `rtc.node_ip`: "ipv4", "ipv6" or "ipv4,ipv6" (one of each family at most)."""
    value = rtc.raw("node_ip")
    if value is None or value == "":
        return ()
    if not isinstance(value, str):
        raise ConfigError(f"'rtc.node_ip' must be a string, not {_kind(value)} {value!r}")
    addresses = tuple(_ip("rtc.node_ip", part) for part in value.split(","))
    families = [ipaddress.ip_address(a).version for a in addresses]
    if len(addresses) > 2 or len(set(families)) != len(families):
        raise ConfigError(f"'rtc.node_ip' {value!r}: at most one IPv4 and one IPv6 address, as 'ipv4,ipv6'")
    return addresses


def _port_range(rtc: _Section) -> tuple[int, int] | None:
    start = rtc.integer("port_range_start", 0, high=65535)
    end = rtc.integer("port_range_end", 0, high=65535)
    udp_port = rtc.raw("udp_port")
    rtc.finish()  # a misspelt key of the pair is the likelier mistake: said first
    if udp_port not in (None, 0, ""):
        raise ConfigError(
            f"'rtc.udp_port' ({udp_port!r}) cannot be honoured: aiortc gives each ICE connection a UDP "
            "socket of its own and cannot share one port between them; use rtc.port_range_start and "
            "rtc.port_range_end instead"
        )
    if not start and not end:
        return None
    if not start or not end or start > end:
        raise ConfigError(
            f"'rtc.port_range_start' ({start}) and 'rtc.port_range_end' ({end}) "
            "must both be set, start <= end"
        )
    return (start, end)


def _webhook(section: _Section, base: WebhookSettings) -> WebhookSettings:
    hook = section.section("webhook")
    settings = WebhookSettings(
        urls=hook.strings("urls", base.urls), api_key=hook.string("api_key", base.api_key)
    )
    hook.finish()
    for url in settings.urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"'webhook.urls': {url!r} is not an http:// or https:// URL")
    return settings


def _limits(section: _Section, base: ParticipantLimits) -> ParticipantLimits:
    """The `limit` section (actors.settings.ParticipantLimits: LiveKit's key names where it has them)."""
    values: dict[str, Any] = {}
    for f in fields(ParticipantLimits):
        default = getattr(base, f.name)
        if isinstance(default, int):
            values[f.name] = section.integer(f.name, default)
        else:
            values[f.name] = section.number(f.name, default)
    section.finish()
    return replace(base, **values)


def _media(
    media: _Section, rtc: _Section, limit: _Section, base: MediaSettings, log_level: str, log_json: bool
) -> MediaSettings:
    node_ip = _node_ip(rtc)
    port_range = _port_range(rtc)
    ice_addresses = tuple(_ip("media.ice_addresses", a) for a in media.strings("ice_addresses", ()))
    if node_ip and ice_addresses:
        raise ConfigError("'rtc.node_ip' and 'media.ice_addresses' both name ICE's addresses: set one")
    settings = MediaSettings(
        ice_addresses=node_ip or ice_addresses or base.ice_addresses,
        ice_port_range=port_range or base.ice_port_range,
        participants_per_worker=media.integer("participants_per_worker", base.participants_per_worker, low=1),
        workers_per_node=media.integer("workers_per_node", base.workers_per_node),
        stun_servers=media.strings("stun_servers", base.stun_servers),
        payload_digests=media.integer("payload_digests", base.payload_digests),
        max_worker_cpu=media.number("max_worker_cpu", base.max_worker_cpu),
        max_worker_packets=media.number("max_worker_packets", base.max_worker_packets),
        room_gauges=media.boolean("room_gauges", base.room_gauges),
        log_level=log_level,
        log_json=log_json,
        limits=_limits(limit, base.limits),
    )
    media.finish()
    return settings


def from_mapping(data: object, base: ServerConfig | None = None) -> ServerConfig:
    """The file's settings over `base`; ConfigError for any key or value that is not right."""
    cfg = base or ServerConfig()
    top = _Section(data, "")
    keys = _keys(top)
    bind_addresses = tuple(
        _ip("bind_addresses", a) for a in top.strings("bind_addresses", cfg.bind_addresses)
    )
    if not bind_addresses:
        raise ConfigError("'bind_addresses' must name at least one address")
    logging_section = top.section("logging")
    log_level = logging_section.string("level", cfg.media.log_level).lower()
    log_json = logging_section.boolean("json", cfg.media.log_json)
    logging_section.finish()
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"'logging.level' must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
    room = top.section("room")
    room_settings = RoomSettings(
        empty_timeout=room.integer("empty_timeout", cfg.room.empty_timeout),
        departure_timeout=room.integer("departure_timeout", cfg.room.departure_timeout),
        max_participants=room.integer("max_participants", cfg.room.max_participants),
    )
    room.finish()
    result = replace(
        cfg,
        api_keys=keys if keys is not None else cfg.api_keys,
        bind_addresses=bind_addresses,
        port=top.integer("port", cfg.port, low=1, high=65535),
        webhook=_webhook(top, cfg.webhook),
        prometheus_port=top.integer("prometheus_port", cfg.prometheus_port, high=65535),
        room=room_settings,
        media=_media(
            top.section("media"), top.section("rtc"), top.section("limit"), cfg.media, log_level, log_json
        ),
    )
    top.finish()
    return result


def check_webhook_key(cfg: ServerConfig) -> None:
    """As LiveKit: webhook URLs need `webhook.api_key`, one of the configured keys (it signs them)."""
    if cfg.webhook.urls and cfg.webhook.api_key not in cfg.api_keys:
        which = repr(cfg.webhook.api_key) if cfg.webhook.api_key else "(not set)"
        raise ConfigError(f"'webhook.api_key' {which} must be one of the configured API keys")


def load(path: str | None, dev: bool, environ: dict[str, str] | None = None) -> ServerConfig:
    """Dev defaults (with --dev), then the YAML file, then LIVEKIT_KEYS / LIVEKIT_API_KEY+SECRET.

    Errors about the file name it: "FILE: 'rtc.port_range_end' must be ..."."""
    env = os.environ if environ is None else environ
    cfg = dev_config() if dev else ServerConfig()
    where = f"{path}: " if path else ""
    if path:
        try:
            cfg = from_mapping(_read_yaml(path), cfg)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
    if env.get("LIVEKIT_KEYS"):
        cfg = replace(cfg, api_keys=parse_keys(env["LIVEKIT_KEYS"]))
    elif env.get("LIVEKIT_API_KEY") and env.get("LIVEKIT_API_SECRET"):
        cfg = replace(cfg, api_keys={env["LIVEKIT_API_KEY"]: env["LIVEKIT_API_SECRET"]})
    try:
        check_webhook_key(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    if cfg.webhook.urls:
        cfg = replace(cfg, webhook=replace(cfg.webhook, api_secret=cfg.api_keys[cfg.webhook.api_key]))
    if not cfg.api_keys:
        raise ConfigError("no API keys: use --dev, a config file with 'keys', or LIVEKIT_KEYS='key: secret'")
    return cfg


def _read_yaml(path: str) -> object:
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read it: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {' '.join(str(exc).split())}") from None
