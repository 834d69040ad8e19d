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
from gateway.joinrequest import JoinRequestError, parse_join_request
from gateway.signal import Sessions, join_params_v1


def create_app(config: ServerConfig, sessions: Sessions) -> Starlette:
    async def rtc(ws: WebSocket) -> None:
        await sessions.serve(ws, config)

    async def rtc_v1(ws: WebSocket) -> None:
        await sessions.serve(ws, config, v1=True)

    async def validate(request: Request) -> Response:
        """What a join on /rtc would answer, without joining (the SDKs ask after a failed WebSocket)."""
        return check(request, v1=False)

    async def validate_v1(request: Request) -> Response:
        """The same for /rtc/v1, whose `join_request` must decode too."""
        return check(request, v1=True)

    def check(request: Request, v1: bool) -> Response:
        query = request.query_params
        try:
            claims = verify_token(token_from_request(request.headers, query) or "", config.api_keys)
            check_join(claims)
            if v1:
                join_params_v1(claims, parse_join_request(query.get("join_request")))
        except AuthError as exc:
            return PlainTextResponse(exc.reason, status_code=exc.status)
        except JoinRequestError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return PlainTextResponse("success")

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
