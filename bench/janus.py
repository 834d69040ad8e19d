"""Janus (Debian's `janus`, VideoRoom plugin) as the peer SFU, and a small VideoRoom signalling adapter.

Set-up: apt-get installs Janus if missing (as root, before `python -m bench` enters the network namespace,
which has no route to the package registry); Janus runs with its own configuration folder generated
into a temp dir: only the VideoRoom plugin and the WebSocket transport (127.0.0.1:8188), RTP ports
20000-40000, inside the bench's network namespace (so ICE gathers 10.213.0.1 and lo, nothing else).

Adapter: JSON over WebSocket (subprotocol "janus-protocol"): create session, attach janus.plugin.videoroom,
create room, join as publisher and publish with an SDP offer, join as subscriber to feeds and answer Janus's
offer ("start"), trickle (end of candidates: aiortc puts its candidates in the SDP), keepalives.
"""

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from bench.result import ScenarioError
from bench.server import can_bind, log_tail, spawn, terminate, wait_ready
from loadgen import rtp
from loadgen.rtp_peer import RtpSendLoop, StreamCounter, add_send_loop, answer_offer, new_pc, wait_connected

log = logging.getLogger(__name__)

JANUS_LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
WS_PORT = 8188
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
REPLY_TIMEOUT = 20.0
KEEPALIVE_S = 25.0


def janus_binary() -> str | None:
    return shutil.which("janus") or (("/usr/bin/janus") if Path("/usr/bin/janus").exists() else None)


def ensure_installed() -> str:
    """The janus binary; installs Debian's package with apt-get when missing and we are root."""
    found = janus_binary()
    if found:
        return found
    if os.geteuid() != 0:
        raise ScenarioError("janus is not installed and we are not root: `apt-get install -y janus`")
    if os.environ.get("RAYSFU_NETNS") == "1":
        raise ScenarioError(
            "janus is not installed, and apt-get cannot reach the registry from inside the test network "
            "namespace: run `python -m bench` itself (it installs Janus before entering), "
            "or `apt-get install -y janus`"
        )
    done = subprocess.run(
        ["apt-get", "install", "-y", "janus"], capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )  # fmt: skip
    found = janus_binary()
    if done.returncode != 0 or not found:
        raise ScenarioError(f"apt-get install janus failed ({done.returncode}): {done.stderr[-1000:]}")
    return found


def lib_dir() -> Path:
    for candidate in (JANUS_LIB, Path("/usr/lib/janus"), Path("/usr/local/lib/janus")):
        if (candidate / "plugins").is_dir():
            return candidate
    raise ScenarioError(f"no Janus plugin folder found under {JANUS_LIB}")


def write_config(folder: Path, ws_port: int = WS_PORT, debug_level: int = 3) -> None:
    """A minimal configuration: VideoRoom + WebSocket transport only."""
    lib = lib_dir()
    for sub, keep in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_websockets.so")):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / keep).symlink_to(lib / sub / keep)
    for sub in ("events", "loggers"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder / "plugins"}"
    transports_folder = "{folder / "transports"}"
    events_folder = "{folder / "events"}"
    loggers_folder = "{folder / "loggers"}"
    debug_level = {debug_level}
    session_timeout = 60
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    nice_debug = false
    ice_ignore_list = "vmnet"
}}
plugins: {{
}}
transports: {{
}}
"""
    )
    (folder / "janus.transport.websockets.jcfg").write_text(
        f"""general: {{
    json = "plain"
    ws = true
    ws_port = {ws_port}
    ws_ip = "127.0.0.1"
    wss = false
}}
admin: {{
    admin_ws = false
    admin_wss = false
}}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")


@dataclass(frozen=True)
class JanusServer:
    url: str
    pid: int
    log_path: Path

    def log_tail(self) -> str:
        return log_tail(self.log_path, 40, 300)


async def _ws_ready(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=("janus-protocol",)) as ws:
            await ws.send_json({"janus": "info", "transaction": "ready"})
            msg = await asyncio.wait_for(ws.receive(), 5)
            return msg.type == aiohttp.WSMsgType.TEXT and '"server_info"' in msg.data
    except (aiohttp.ClientError, OSError, TimeoutError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def running_janus(log_dir: Path, ws_port: int = WS_PORT) -> Iterator[JanusServer]:
    binary = ensure_installed()
    if not can_bind("127.0.0.1", ws_port):
        raise ScenarioError(f"port {ws_port} is taken: is another Janus running?")
    log_path = log_dir / "janus.log"
    with tempfile.TemporaryDirectory(prefix="bench-janus-") as tmp:
        folder = Path(tmp)
        write_config(folder, ws_port)
        process = spawn([binary, "-F", str(folder), "-C", str(folder / "janus.jcfg"), "-o"], log_path)
        server = JanusServer(f"ws://127.0.0.1:{ws_port}", process.pid, log_path)
        try:
            failure = wait_ready(
                process, lambda: asyncio.run(_ws_ready(server.url)), READY_TIMEOUT,
                "janus", f"{server.url} did not answer Janus's info request",
            )  # fmt: skip
            if failure:
                raise ScenarioError(f"{failure}:\n{server.log_tail()}")
            yield server
        finally:
            terminate(process, STOP_TIMEOUT)


# ----- signalling --------------------------------------------------------------------------------------


class JanusError(Exception):
    pass


class JanusSession:
    """One Janus session on its own WebSocket; handles are attached to janus.plugin.videoroom."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.session_id = 0
        self._ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}  # handle -> async plugin events
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url, protocols=("janus-protocol",), heartbeat=None)
        self._tasks.append(asyncio.ensure_future(self._read()))
        reply = await self.request({"janus": "create"})
        self.session_id = int(reply["data"]["id"])
        self._tasks.append(asyncio.ensure_future(self._keepalive()))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.session_id and self.ws is not None and not self.ws.closed:
                await self.request({"janus": "destroy"}, timeout=5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()

    async def request(self, message: dict[str, Any], timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:  # noqa: ASYNC109
        """Send and wait for the synchronous reply ("success", "error", or "ack" for async requests)."""
        assert self.ws is not None
        transaction = f"t{next(self._ids)}"
        message = {**message, "transaction": transaction}
        if self.session_id and "session_id" not in message:
            message["session_id"] = self.session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[transaction] = future
        await self.ws.send_str(json.dumps(message))
        try:
            async with asyncio.timeout(timeout):
                reply = await future
        finally:
            self._replies.pop(transaction, None)
        if reply.get("janus") == "error":
            raise JanusError(str(reply.get("error")))
        plugin_error = reply.get("plugindata", {}).get("data", {}).get("error")
        if plugin_error:
            raise JanusError(str(plugin_error))
        return reply

    async def attach(self) -> int:
        reply = await self.request({"janus": "attach", "plugin": "janus.plugin.videoroom"})
        handle = int(reply["data"]["id"])
        self._events[handle] = asyncio.Queue()
        return handle

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A plugin request; for asynchronous ones (join, publish, start) the matching event is returned."""
        msg: dict[str, Any] = {"janus": "message", "handle_id": handle, "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self.request(msg)
        if reply.get("janus") == "success":
            return reply
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                event = await self._events[handle].get()
                data = event.get("plugindata", {}).get("data", {})
                if "error" in data:
                    raise JanusError(str(data["error"]))
                if event.get("transaction") == reply.get("transaction") or event.get("jsep") or data:
                    return event

    async def trickle_done(self, handle: int) -> None:
        await self.request({"janus": "trickle", "handle_id": handle, "candidate": {"completed": True}})

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            await self.request({"janus": "keepalive"})

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data: dict[str, Any] = json.loads(msg.data)
            kind = data.get("janus")
            transaction = data.get("transaction")
            if kind in ("success", "error", "ack") and transaction in self._replies:
                future = self._replies[transaction]
                if not future.done():
                    future.set_result(data)
                continue
            if kind == "event":
                queue = self._events.get(int(data.get("sender", 0)))
                if queue is not None:
                    queue.put_nowait(data)
            # webrtcup, media, slowlink, hangup, trickle, keepalive acks: not needed by the bench


async def create_room(session: JanusSession, room: int, publishers: int) -> None:
    handle = await session.attach()
    await session.message(
        handle,
        {
            "request": "create", "room": room, "publishers": publishers, "bitrate": 0,
            "audiocodec": "opus", "videocodec": "vp8", "notify_joining": False, "fir_freq": 0,
        },
    )  # fmt: skip


class JanusPeer:
    """One light participant in a VideoRoom: a publisher handle + PC and/or a subscriber handle + PC."""

    def __init__(self, session: JanusSession, room: int, feed_id: int, display: str) -> None:
        self.session = session
        self.room = room
        self.feed_id = feed_id
        self.display = display
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self.counters: dict[str, StreamCounter] = {}
        self.senders: list[RtpSendLoop] = []
        self.connect_ms: float | None = None

    async def publish(
        self, kinds: list[str], video: rtp.VideoSource | None = None, max_seconds: float = 3600.0
    ) -> None:
        handle = await self.session.attach()
        await self.session.message(
            handle, {"request": "join", "ptype": "publisher", "room": self.room, "id": self.feed_id,
                     "display": self.display},
        )  # fmt: skip
        pc = self.publisher = new_pc()
        loops = [
            add_send_loop(
                pc, kind, f"s{self.feed_id}", f"{kind}{self.feed_id}", video=video, max_seconds=max_seconds
            )
            for kind in kinds
        ]
        await pc.setLocalDescription(await pc.createOffer())
        event = await self.session.message(
            handle, {"request": "publish", "audio": "audio" in kinds, "video": "video" in kinds},
            {"type": "offer", "sdp": pc.localDescription.sdp},
        )  # fmt: skip
        jsep = event.get("jsep")
        if not jsep:
            raise JanusError(f"no answer to the publisher offer: {event}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type="answer"))
        await self.session.trickle_done(handle)
        await wait_connected(pc)
        for loop in loops:
            loop.start()
        self.senders.extend(loops)

    async def subscribe(self, feeds: list[int], started_ns: int | None = None) -> None:
        handle = await self.session.attach()
        event = await self.session.message(
            handle, {"request": "join", "ptype": "subscriber", "room": self.room,
                     "streams": [{"feed": f} for f in feeds]},
        )  # fmt: skip
        jsep = event.get("jsep")
        if not jsep:
            raise JanusError(f"no offer for the subscription: {event}")
        pc = self.subscriber = new_pc()
        sdp = await answer_offer(pc, jsep["sdp"], self.counters)
        await self.session.message(handle, {"request": "start"}, {"type": "answer", "sdp": sdp})
        await self.session.trickle_done(handle)
        await wait_connected(pc)
        if started_ns is not None:
            self.connect_ms = (time.monotonic_ns() - started_ns) / 1e6

    async def close(self) -> None:
        for loop in self.senders:
            await loop.stop()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                await pc.close()
