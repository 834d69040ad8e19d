"""The demo page at `/`: join a room from a browser tab with the camera and microphone (gateway/demo_page).

Its script is livekit-client bundled by esbuild when raysfu is installed (setup.py runs `npm run build`);
an install without npm serves, in its place, a script that says so on the page. The page gets its token
from `POST /demo/token` ({"identity", "room"}), which only a `--dev` server that accepts the dev key answers,
signing with that key (whose secret everyone knows anyway): anybody who can reach the page could join any
room with it. Other servers answer 404, and the page takes a pasted token instead.
"""

import json
import warnings
from pathlib import Path

import jwt.warnings
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.auth import VideoGrant, mint_token
from gateway.config import DEV_API_KEY, DEV_API_SECRET, ServerConfig

PAGE_DIR = Path(__file__).with_name("demo_page")
MAX_FIELD = 128  # characters of an identity or a room name

NOT_BUILT = (
    "The demo page's script (livekit-client) was not built: the install needs Node.js and npm. "
    "Install them (Debian: apt-get install nodejs npm) and run `.venv/bin/pip install -e .` again."
)


def routes(config: ServerConfig) -> list[Route]:
    async def index(request: Request) -> Response:
        return HTMLResponse((PAGE_DIR / "index.html").read_text())

    async def bundle(request: Request) -> Response:
        path = PAGE_DIR / "bundle.js"
        if path.exists():
            return FileResponse(path, media_type="text/javascript")
        script = f"document.getElementById('status').textContent = {json.dumps(NOT_BUILT)};"
        return Response(script, media_type="text/javascript")

    async def dev_token(request: Request) -> Response:
        if not config.dev or config.api_keys.get(DEV_API_KEY) != DEV_API_SECRET:
            return PlainTextResponse(
                "this server mints no tokens (only --dev with the dev key does): paste one from raysfu token",
                status_code=404,
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        fields = [body.get(k) if isinstance(body, dict) else None for k in ("identity", "room")]
        if not all(isinstance(f, str) and 0 < len(f.strip()) <= MAX_FIELD for f in fields):
            return PlainTextResponse(
                f'expected JSON {{"identity": ..., "room": ...}}, each 1 to {MAX_FIELD} characters',
                status_code=400,
            )
        identity, room = (str(f).strip() for f in fields)
        with warnings.catch_warnings():  # the dev secret is short on purpose: no advice in the log
            warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
            token = mint_token(
                DEV_API_KEY, DEV_API_SECRET, identity, room, VideoGrant(room_join=True), name=identity
            )
        return JSONResponse({"token": token})

    return [
        Route("/", index),
        Route("/demo/bundle.js", bundle),
        Route("/demo/token", dev_token, methods=["POST"]),
    ]
