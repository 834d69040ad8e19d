"""Access tokens: LiveKit's HS256 JWTs, their video grant, and the permission checks built on them.

The claim names and the defaults of absent grants follow LiveKit (livekit/protocol auth/grants.go), so a token
minted by any LiveKit server SDK means the same thing here. Every refusal is logged once, on logger
`gateway.auth`, with its reason but never the token or a secret.
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jwt
from livekit.protocol import models

from actors.limits import MAX_NAME

log = logging.getLogger("gateway.auth")

ALGORITHM = "HS256"
LEEWAY = 60  # seconds of clock skew tolerated on exp and nbf, as LiveKit's verifier
DEFAULT_TTL = 6 * 3600
# Tokens longer than this are refused unread, with HTTP 431 (what LiveKit's HTTP server answers for a header
# over its limit, there 1 MiB). A token from an SDK is ~0.5 KB; 16 KiB leaves room for metadata and
# attributes in it, and refusing it costs nothing however large it is.
MAX_TOKEN = 16 * 1024


class AuthError(Exception):
    """A refused request. `status`: 401 bad or missing credentials, 403 not permitted, 400 unusable claims,
    431 a token over MAX_TOKEN."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class VideoGrant:
    room_join: bool = False
    room: str = ""
    room_create: bool = False
    room_list: bool = False
    room_admin: bool = False
    room_record: bool = False
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    # Track sources (lower case, e.g. "camera"); empty means every source, as in LiveKit.
    can_publish_sources: tuple[str, ...] = ()
    can_update_own_metadata: bool = False
    hidden: bool = False
    recorder: bool = False
    agent: bool = False


@dataclass(frozen=True)
class Claims:
    api_key: str
    identity: str
    name: str = ""
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    kind: str = ""
    video: VideoGrant = VideoGrant()
    expires_at: int = 0


_SOURCES = frozenset(models.TrackSource.keys())  # CAMERA, MICROPHONE, ...

# VideoGrant field -> JWT claim name (LiveKit's camelCase).
_CLAIM_NAMES = {
    "room_join": "roomJoin",
    "room": "room",
    "room_create": "roomCreate",
    "room_list": "roomList",
    "room_admin": "roomAdmin",
    "room_record": "roomRecord",
    "can_publish": "canPublish",
    "can_subscribe": "canSubscribe",
    "can_publish_data": "canPublishData",
    "can_publish_sources": "canPublishSources",
    "can_update_own_metadata": "canUpdateOwnMetadata",
    "hidden": "hidden",
    "recorder": "recorder",
    "agent": "agent",
}


def refuse(status: int, reason: str) -> AuthError:
    """Log a refusal and build the error to raise."""
    log.info("refused (%d): %s", status, reason)
    return AuthError(status, reason)


def _text(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise refuse(401, f"claim {what} is not a string")
    return value


def _flag(video: Mapping[str, Any], key: str, default: bool) -> bool:
    value = video.get(key)
    return default if value is None else bool(value)


def grant_from_claim(video: Mapping[str, Any]) -> VideoGrant:
    """The `video` claim as a VideoGrant. As LiveKit: canPublishData absent follows canPublish."""
    can_publish = _flag(video, "canPublish", True)
    sources = video.get("canPublishSources") or []
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise refuse(401, "claim video.canPublishSources is not a list of strings")
    return VideoGrant(
        room_join=_flag(video, "roomJoin", False),
        room=_text(video.get("room"), "video.room"),
        room_create=_flag(video, "roomCreate", False),
        room_list=_flag(video, "roomList", False),
        room_admin=_flag(video, "roomAdmin", False),
        room_record=_flag(video, "roomRecord", False),
        can_publish=can_publish,
        can_subscribe=_flag(video, "canSubscribe", True),
        can_publish_data=_flag(video, "canPublishData", can_publish),
        can_publish_sources=tuple(s.lower() for s in sources),
        can_update_own_metadata=_flag(video, "canUpdateOwnMetadata", False),
        hidden=_flag(video, "hidden", False),
        recorder=_flag(video, "recorder", False),
        agent=_flag(video, "agent", False),
    )


def grant_to_claim(grant: VideoGrant) -> dict[str, Any]:
    """The `video` claim for a VideoGrant; false flags and empty values are left out, as LiveKit's SDKs do,
    except the three permissions whose absence means true."""
    claim: dict[str, Any] = {}
    for attr, key in _CLAIM_NAMES.items():
        value = getattr(grant, attr)
        if attr in ("can_publish", "can_subscribe", "can_publish_data"):
            claim[key] = value
        elif attr == "can_publish_sources":
            if value:
                claim[key] = list(value)
        elif value:
            claim[key] = value
    return claim


def _unverified_issuer(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise refuse(401, f"malformed token: {exc}") from exc
    if header.get("alg") != ALGORITHM:
        raise refuse(401, f"unsupported signing algorithm {header.get('alg')!r}: only {ALGORITHM}")
    issuer = payload.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise refuse(401, "token has no issuer (API key)")
    return issuer


def verify_token(token: str | None, keys: Mapping[str, str], leeway: int = LEEWAY) -> Claims:
    """Check a token's size, algorithm, issuer, signature, exp and nbf; return its claims or raise AuthError
    (401; 431 for a token over MAX_TOKEN, refused before it is decoded)."""
    if not token:
        raise refuse(401, "missing access token")
    if len(token) > MAX_TOKEN:
        raise refuse(431, f"access token is larger than {MAX_TOKEN} bytes")
    api_key = _unverified_issuer(token)
    secret = keys.get(api_key)
    if not secret:
        raise refuse(401, f"unknown API key {api_key!r}")
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=api_key,
            leeway=leeway,
            options={"require": ["exp"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise refuse(401, "token expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise refuse(401, "token not valid yet (nbf is in the future)") from exc
    except jwt.InvalidSignatureError as exc:
        raise refuse(401, "invalid signature") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise refuse(401, f"token has no {exc.claim} claim") from exc
    except jwt.InvalidTokenError as exc:
        raise refuse(401, f"invalid token: {exc}") from exc
    video = payload.get("video") or {}
    attributes = payload.get("attributes") or {}
    if not isinstance(video, dict):
        raise refuse(401, "claim video is not an object")
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise refuse(401, "claim attributes is not a map of strings")
    return Claims(
        api_key=api_key,
        # LiveKit falls back to the token id when there is no subject.
        identity=_text(payload.get("sub"), "sub") or _text(payload.get("jti"), "jti"),
        name=_text(payload.get("name"), "name"),
        metadata=_text(payload.get("metadata"), "metadata"),
        attributes=dict(attributes),
        kind=_text(payload.get("kind"), "kind"),
        video=grant_from_claim(video),
        expires_at=int(payload["exp"]),
    )


def participant_permission(grant: VideoGrant) -> models.ParticipantPermission:
    """The ParticipantPermission a joining participant gets from its grant (LiveKit's ToPermission)."""
    sources = [s.upper() for s in grant.can_publish_sources if s.upper() in _SOURCES]
    return models.ParticipantPermission(
        can_publish=grant.can_publish,
        can_subscribe=grant.can_subscribe,
        can_publish_data=grant.can_publish_data,
        can_publish_sources=sources,
        can_update_metadata=grant.can_update_own_metadata,
        hidden=grant.hidden,
        recorder=grant.recorder,
        agent=grant.agent,
    )


def check_join(claims: Claims, room: str | None = None) -> str:
    """The room a token may join (its grant's room; `room`, when the client names one, must be that room)."""
    grant = claims.video
    if not grant.room_join or not grant.room:
        raise refuse(403, "token has no permission to join a room (roomJoin and room are required)")
    if room and room != grant.room:
        raise refuse(403, f"no permission to join room {room}")
    if not claims.identity:
        raise refuse(400, "token has no identity (sub)")
    if len(claims.identity) > MAX_NAME:
        raise refuse(400, f"identity is longer than {MAX_NAME} characters")
    if len(grant.room) > MAX_NAME:
        raise refuse(400, f"room name is longer than {MAX_NAME} characters")
    return grant.room


def check_room_create(claims: Claims) -> None:
    if not claims.video.room_create:
        raise refuse(403, "permissions denied: roomCreate grant required")


def check_room_list(claims: Claims) -> None:
    if not claims.video.room_list:
        raise refuse(403, "permissions denied: roomList grant required")


def check_room_admin(claims: Claims, room: str) -> None:
    """LiveKit's EnsureAdminPermission: roomAdmin, for the token's own room only."""
    if not claims.video.room_admin:
        raise refuse(403, "permissions denied: roomAdmin grant required")
    if claims.video.room != room:
        raise refuse(403, f"permissions denied: token is for room {claims.video.room!r}, not {room!r}")


def mint_token(
    api_key: str,
    secret: str,
    identity: str,
    room: str | None,
    grant: VideoGrant,
    name: str = "",
    metadata: str = "",
    ttl: int = DEFAULT_TTL,
) -> str:
    """A LiveKit access token; `room`, when given, replaces the grant's room."""
    if room is not None:
        grant = replace(grant, room=room)
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "nbf": now,
        "exp": now + ttl,
        "video": grant_to_claim(grant),
    }
    if name:
        payload["name"] = name
    if metadata:
        payload["metadata"] = metadata
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def token_from_request(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """`Authorization: Bearer <jwt>`, else the `access_token` query parameter (LiveKit's two places)."""
    for key, value in headers.items():
        if key.lower() == "authorization" and value.startswith("Bearer "):
            return value.removeprefix("Bearer ").strip() or None
    return query.get("access_token") or None
