"""Server configuration: `--dev` defaults, a YAML file, and the environment."""

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from actors.settings import MediaSettings, ParticipantLimits, RoomSettings

DEV_API_KEY = "devkey"
DEV_API_SECRET = "secret"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerConfig:
    api_keys: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 7880
    dev: bool = False
    ray_address: str | None = None  # None: start a local Ray
    dashboard_port: int = 8265
    room: RoomSettings = field(default_factory=RoomSettings)
    media: MediaSettings = field(default_factory=MediaSettings)

    @property
    def ws_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
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


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"'{name}' must be a mapping")
    return value


def _limits(section: dict[str, Any], base: ParticipantLimits) -> ParticipantLimits:
    """The `limit` section (actors.settings.ParticipantLimits: LiveKit's key names where it has them)."""
    known = {f.name: type(getattr(base, f.name)) for f in fields(ParticipantLimits)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"unknown limit settings: {', '.join(unknown)}")
    return replace(base, **{key: known[key](value) for key, value in section.items()})


def from_mapping(data: dict[str, Any], base: ServerConfig | None = None) -> ServerConfig:
    cfg = base or ServerConfig()
    try:
        keys = data.get("keys")
        if isinstance(keys, str):
            keys = parse_keys(keys)
        room = _section(data, "room")
        media = _section(data, "media")
        limit = _section(data, "limit")
        return replace(
            cfg,
            api_keys={str(k): str(v) for k, v in keys.items()} if keys else cfg.api_keys,
            host=str(data.get("bind_address", cfg.host)),
            port=int(data.get("port", cfg.port)),
            room=RoomSettings(
                empty_timeout=int(room.get("empty_timeout", cfg.room.empty_timeout)),
                departure_timeout=int(room.get("departure_timeout", cfg.room.departure_timeout)),
                max_participants=int(room.get("max_participants", cfg.room.max_participants)),
            ),
            media=MediaSettings(
                ice_addresses=tuple(media.get("ice_addresses", cfg.media.ice_addresses)),
                participants_per_worker=int(
                    media.get("participants_per_worker", cfg.media.participants_per_worker)
                ),
                workers_per_node=int(media.get("workers_per_node", cfg.media.workers_per_node)),
                stun_servers=tuple(media.get("stun_servers", cfg.media.stun_servers)),
                payload_digests=int(media.get("payload_digests", cfg.media.payload_digests)),
                max_worker_cpu=float(media.get("max_worker_cpu", cfg.media.max_worker_cpu)),
                limits=_limits(limit, cfg.media.limits),
            ),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad configuration: {exc}") from exc


def load(path: str | None, dev: bool, environ: dict[str, str] | None = None) -> ServerConfig:
    """Dev defaults (with --dev), then the YAML file, then LIVEKIT_KEYS / LIVEKIT_API_KEY+SECRET."""
    env = os.environ if environ is None else environ
    cfg = dev_config() if dev else ServerConfig()
    if path:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        cfg = from_mapping(data, cfg)
    if env.get("LIVEKIT_KEYS"):
        cfg = replace(cfg, api_keys=parse_keys(env["LIVEKIT_KEYS"]))
    elif env.get("LIVEKIT_API_KEY") and env.get("LIVEKIT_API_SECRET"):
        cfg = replace(cfg, api_keys={env["LIVEKIT_API_KEY"]: env["LIVEKIT_API_SECRET"]})
    if not cfg.api_keys:
        raise ConfigError("no API keys: use --dev, a config file with 'keys', or LIVEKIT_KEYS='key: secret'")
    return cfg
