"""`raysfu serve`: Ray, this node's media workers and the gateway, with a clean shutdown."""

import asyncio
import logging
import os
import signal
import socket
import sys
from types import FrameType

import ray
import uvicorn
import websockets.http11
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from actors import logs, registry
from actors.logs import LOG_LEVELS
from actors.naming import NAMESPACE, media_actor
from actors.placement import node_label
from actors.worker import create_media_worker
from gateway import gcs_polling
from gateway.app import create_app
from gateway.auth import MAX_TOKEN
from gateway.config import ServerConfig
from gateway.metrics import serve_metrics
from gateway.signal import ABORT, Sessions

log = logging.getLogger(__name__)

# uvicorn refuses larger frames itself; frames up to this size reach the gateway, which refuses anything
# over the signalling limit (2 MiB) with a log line of its own.
WS_MAX_SIZE = 16 * 1024 * 1024
# The longest request line or header line of a WebSocket upgrade (websockets' own default is 8 KiB): room for
# an access token of auth.MAX_TOKEN in the query or the Authorization header, which the gateway then refuses
# with a reason when it is over. An HTTP request's whole head may be this large too (h11's limit).
MAX_REQUEST_LINE = 2 * MAX_TOKEN


class SignallingProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, except that a handshake websockets rejects on its own (a request
    line or header over its limit: 414 or 431) is answered. uvicorn never sends that answer: the client
    would wait for its timeout."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.handshake_exc is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def handle_connect(self, event: Request) -> None:
        """... and the session can cut off a client that stopped reading (ABORT in the scope's extensions):
        closing would wait for the client to read what is buffered, which it never does."""
        super().handle_connect(event)
        if getattr(self, "scope", None) is not None:
            self.scope["extensions"][ABORT] = {"abort": self.transport.abort}


# Task events the GCS of our own local Ray keeps for the dashboard's Tasks view (Ray's default, 100,000,
# costs ~3.3 KB each there: ~330 MB before it levels off). The last 10,000 messages between processes are
# enough to watch a room at work. A cluster's head sets RAY_task_events_max_num_task_in_gcs (cluster.yaml).
TASK_EVENTS_IN_GCS = 10_000


def start_ray(config: ServerConfig) -> str:
    """Start (or join) Ray; returns the dashboard URL. Every worker process of the job (the media workers,
    the room registry) logs as the gateway does, from its start (Ray's worker_process_setup_hook)."""
    level, json_lines = config.media.log_level, config.media.log_json

    def setup_logging() -> None:
        logs.configure(level, json_lines)

    runtime_env = {"worker_process_setup_hook": setup_logging}
    gcs_polling.install()
    if config.ray_address:
        context = ray.init(
            address=config.ray_address, namespace=NAMESPACE, log_to_driver=True, runtime_env=runtime_env
        )
        return str(context.dashboard_url or "")
    context = ray.init(
        address="local",
        namespace=NAMESPACE,
        _node_ip_address="127.0.0.1" if config.dev else None,
        include_dashboard=True,
        dashboard_host="127.0.0.1" if config.dev else "0.0.0.0",
        dashboard_port=config.dashboard_port,
        log_to_driver=True,
        runtime_env=runtime_env,
        _system_config={"task_events_max_num_task_in_gcs": TASK_EVENTS_IN_GCS},
    )
    return f"http://{context.dashboard_url}" if context.dashboard_url else "(no dashboard)"


def start_media_workers(config: ServerConfig) -> list[str]:
    """This node's pool of MediaWorkers (default one per CPU), pinned to this node."""
    node_id = ray.get_runtime_context().get_node_id()
    count = config.media.workers_per_node or os.cpu_count() or 1
    names = [media_actor(node_label(node_id), i) for i in range(count)]
    handles = [create_media_worker(name, config.media, node_id, config.webhook) for name in names]
    ray.get([h.ready.remote() for h in handles])
    ray.get(registry.registry().rooms.remote())  # the cluster's room registry, started by the first node
    return names


def stop_actors(worker_names: list[str], everything: bool) -> None:
    """Kill this node's media workers; with `everything` (our own local Ray), every raysfu actor."""
    names = set(worker_names)
    if everything:
        names |= {
            n["name"] for n in ray.util.list_named_actors(all_namespaces=True) if n["namespace"] == NAMESPACE
        }
    for name in sorted(names):
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:
            pass


class DenialNoise(logging.Filter):
    """Drops uvicorn's false error after a WebSocket denial response.

    A join refused before the upgrade (a bad token: 401; a malformed /rtc/v1 join_request: 400; a full
    server: 503) is answered with a real HTTP response. uvicorn's websockets-sansio protocol sends it
    correctly but never marks the handshake done, so it then logs "ASGI callable returned without completing
    handshake." for each one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


class GatewayServer(uvicorn.Server):
    """uvicorn, but a signal first sends every client a LeaveRequest(SERVER_SHUTDOWN)."""

    def __init__(self, config: uvicorn.Config, sessions: Sessions) -> None:
        super().__init__(config)
        self._sessions = sessions
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not delegated to uvicorn: it would re-raise the signal after shutting down, and Ray's driver
        # handler turns that into sys.exit(15) before the actors are cleaned up.
        if self._stopping:
            self.force_exit = True  # a second signal: stop now
            return
        self._stopping = True
        log.info("%s: telling %d clients and shutting down", signal.Signals(sig).name, len(self._sessions))

        async def leave_then_exit() -> None:
            try:
                await asyncio.wait_for(self._sessions.shutdown(), 10)
            finally:
                self.should_exit = True

        task = asyncio.get_event_loop().create_task(leave_then_exit())
        self._tasks.add(task)


def banner(config: ServerConfig, dashboard: str) -> str:
    key, secret = next(iter(config.api_keys.items()))
    lines = [
        f"raysfu is listening on {config.ws_url}",
        f"  Ray dashboard: {dashboard}",
        f"  API key: {key}" + (f"  secret: {secret}" if config.dev else ""),
        f"  mint a token: raysfu token --identity alice --room demo{'' if config.dev else ' --config FILE'}",
        f"  demo page: http{config.ws_url.removeprefix('ws')}/",
    ]
    return "\n".join(lines)


def listen(config: ServerConfig) -> list[socket.socket]:
    """The gateway's listening sockets, one per bind address, bound before anything else starts."""
    sockets: list[socket.socket] = []
    for address in config.bind_addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            sockets.append(socket.create_server((address, config.port), family=family))
        except OSError as exc:
            for sock in sockets:
                sock.close()
            raise OSError(f"cannot listen on {address} port {config.port}: {exc.strerror or exc}") from None
    return sockets


def serve(config: ServerConfig) -> int:
    logs.configure(config.media.log_level, config.media.log_json)
    websockets.http11.MAX_LINE_LENGTH = MAX_REQUEST_LINE  # read by its parser at each request
    try:
        sockets = listen(config)
    except OSError as exc:
        print(f"raysfu: {exc}", file=sys.stderr)
        return 1
    dashboard = start_ray(config)
    workers = start_media_workers(config)
    log.info("media workers: %s", ", ".join(workers))
    if config.prometheus_port:
        try:
            serve_metrics(config.prometheus_port, config.bind_addresses, workers)
        except OSError as exc:
            print(f"raysfu: cannot serve metrics on port {config.prometheus_port}: {exc}", file=sys.stderr)
            stop_actors(workers, everything=not config.ray_address)
            ray.shutdown()
            return 1
        log.info("Prometheus metrics on port %d", config.prometheus_port)
    sessions = Sessions(node_label(ray.get_runtime_context().get_node_id()))
    app = create_app(config, sessions)
    server = GatewayServer(
        uvicorn.Config(
            app,
            ws=SignallingProtocol,
            ws_max_size=WS_MAX_SIZE,
            h11_max_incomplete_event_size=MAX_REQUEST_LINE,
            log_level=LOG_LEVELS[config.media.log_level],
            # JSON lines: uvicorn's loggers go to the root logger's handler (logs.configure), not its own.
            log_config=None if config.media.log_json else uvicorn.config.LOGGING_CONFIG,
            lifespan="off",
        ),
        sessions,
    )
    logging.getLogger("uvicorn.error").addFilter(DenialNoise())
    if config.media.log_json:
        log.info("%s", banner(config, dashboard))
    else:
        print(banner(config, dashboard), flush=True)
    try:
        server.run(sockets)
    finally:
        stop_actors(workers, everything=not config.ray_address)
        ray.shutdown()
        log.info("stopped")
    return 0 if server.started else 1
