"""The `raysfu` command: `serve` runs the server, `token` mints an access token, `room` and `participant`
manage a running server (gateway/admin.py), `load-test` puts load on one (gateway/loadtest.py)."""

import argparse
import os
import sys
from dataclasses import replace
from typing import NoReturn

from gateway import admin, loadtest
from gateway import config as cfg
from gateway.auth import VideoGrant, mint_token


class Parser(argparse.ArgumentParser):
    """A bad command line is one line on stderr (and exit code 2), not the usage and then the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="raysfu", description="A LiveKit-compatible SFU on Ray")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the gateway and this node's media workers")
    s.add_argument("--dev", action="store_true", help="local Ray, 127.0.0.1:7880, key devkey / secret secret")
    s.add_argument("--config", help="YAML configuration file")
    s.add_argument("--address", help="join an existing Ray cluster (e.g. 'auto' or host:port)")
    s.add_argument(
        "--host",
        action="append",
        default=[],
        help="address the gateway binds (repeatable; default 127.0.0.1)",
    )
    s.add_argument("--port", type=int, help="gateway port (default 7880)")
    s.add_argument("--dashboard-port", type=int, help="Ray dashboard port of a local Ray (default 8265)")
    s.add_argument("--ice-address", action="append", default=[], help="address ICE gathers on (repeatable)")
    s.add_argument("--workers", type=int, help="media workers on this node (default: one per CPU)")
    s.add_argument(
        "--participants-per-worker",
        type=int,
        help="participants a media worker takes before the next one is used",
    )
    s.add_argument(
        "--payload-digests",
        type=int,
        help="keep CRC32 digests of the first N RTP payloads per track in media_stats (for tests)",
    )
    s.add_argument("--departure-timeout", type=int, help="seconds a room stays open after the last leaves")
    s.add_argument("--empty-timeout", type=int, help="seconds a room nobody joined stays open")

    t = sub.add_parser("token", help="print an access token")
    t.add_argument("--identity", required=True)
    t.add_argument("--room", help="room to join (required unless only admin grants are wanted)")
    t.add_argument("--name", default="")
    t.add_argument("--metadata", default="")
    t.add_argument("--config", help="YAML configuration file with the API keys (default: the dev key)")
    t.add_argument("--api-key", help="which of the configured keys to sign with")
    t.add_argument("--ttl", type=int, default=6 * 3600, help="seconds the token is valid")
    t.add_argument("--no-publish", action="store_true", help="canPublish=false")
    t.add_argument("--no-subscribe", action="store_true", help="canSubscribe=false")
    t.add_argument("--no-publish-data", action="store_true", help="canPublishData=false")
    t.add_argument("--update-own-metadata", action="store_true", help="canUpdateOwnMetadata=true")
    t.add_argument("--hidden", action="store_true", help="hidden participant")
    t.add_argument("--admin", action="store_true", help="roomAdmin, roomCreate and roomList")

    admin.add_commands(sub)
    loadtest.add_command(sub, admin.server_options())
    return p


def serve_config(args: argparse.Namespace) -> cfg.ServerConfig:
    config = cfg.load(args.config, args.dev)
    if args.address:
        config = replace(config, ray_address=args.address)
    if args.host:
        config = replace(config, bind_addresses=tuple(args.host))
    if args.port:
        config = replace(config, port=args.port)
    if args.dashboard_port:
        config = replace(config, dashboard_port=args.dashboard_port)
    media = config.media
    if args.ice_address:
        media = replace(media, ice_addresses=tuple(args.ice_address))
    if args.workers is not None:
        media = replace(media, workers_per_node=args.workers)
    if args.participants_per_worker is not None:
        media = replace(media, participants_per_worker=args.participants_per_worker)
    if args.payload_digests is not None:
        media = replace(media, payload_digests=args.payload_digests)
    room = config.room
    if args.departure_timeout is not None:
        room = replace(room, departure_timeout=args.departure_timeout)
    if args.empty_timeout is not None:
        room = replace(room, empty_timeout=args.empty_timeout)
    return replace(config, media=media, room=room)


def token(args: argparse.Namespace) -> str:
    keys = cfg.load(args.config, dev=args.config is None).api_keys
    key = args.api_key or next(iter(keys))
    if key not in keys:
        raise cfg.ConfigError(f"API key {key!r} is not configured")
    grant = VideoGrant(
        room_join=args.room is not None,
        room=args.room or "",
        room_admin=args.admin,
        room_create=args.admin,
        room_list=args.admin,
        can_publish=not args.no_publish,
        can_subscribe=not args.no_subscribe,
        can_publish_data=not args.no_publish_data,
        can_update_own_metadata=args.update_own_metadata,
        hidden=args.hidden,
    )
    return mint_token(key, keys[key], args.identity, args.room, grant, args.name, args.metadata, args.ttl)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "token":
            print(token(args))
            return 0
        if args.command in ("room", "participant"):
            return admin.main(args)
        if args.command == "load-test":
            return loadtest.main(args)
        config = serve_config(args)
        # Ray reads these when imported, so they are set before. Log dedup merges similar lines of different
        # actors ("repeated 6x across cluster"), but an SFU's log must say which room, participant and track
        # each line is about.
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        if config.media.log_json:
            # The workers' lines are JSON already (actors.logs): printed as they are, without Ray's
            # "(media:... pid=...)" prefix, which would make them something else than JSON.
            os.environ.setdefault("RAY_DISABLE_WORKER_LOG_PREFIX", "1")
        if config.dev and not config.ray_address:
            # --dev keeps Ray on loopback. Otherwise Ray swaps 127.0.0.1 for the machine's LAN address and
            # its servers listen on every interface (seen with `ss -ltnp`), _node_ip_address notwithstanding.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        from gateway.server import serve  # imports Ray: only for `serve`

        return serve(config)
    except cfg.ConfigError as exc:
        print(f"raysfu: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
