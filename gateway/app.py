"""The gateway's Starlette application: signalling, validation, the room service, health and the demo page."""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from gateway import demo, twirp
from gateway.auth import AuthError, check_join, token_from_request, verify_token
from gateway.config import ServerConfig
from gateway.signal import Sessions


def create_app(config: ServerConfig, sessions: Sessions) -> Starlette:
    async def rtc(ws: WebSocket) -> None:
        await sessions.serve(ws, config)

    async def rtc_v1(ws: WebSocket) -> None:
        # The single-PeerConnection path is not served: a real 404 makes both SDKs fall back to /rtc
        # (Starlette would answer an unknown WebSocket path with 403, which they do not fall back from).
        await ws.send_denial_response(PlainTextResponse("not found", status_code=404))

    async def validate(request: Request) -> Response:
        try:
            check_join(
                verify_token(token_from_request(request.headers, request.query_params) or "", config.api_keys)
            )
        except AuthError as exc:
            return PlainTextResponse(exc.reason, status_code=exc.status)
        return PlainTextResponse("success")

    async def validate_v1(request: Request) -> Response:
        return PlainTextResponse("not found", status_code=404)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        WebSocketRoute("/rtc", rtc),
        WebSocketRoute("/rtc/v1", rtc_v1),
        Route("/rtc/validate", validate),
        Route("/rtc/v1/validate", validate_v1),
        Route("/healthz", healthz),
        *twirp.routes(config),
        *demo.routes(config),
    ]
    # The browser SDK's validate fetch is cross-origin: every answer needs CORS headers, 404s included.
    middleware = [Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"])]
    return Starlette(routes=routes, middleware=middleware)
