"""Twirp errors: the codes, their HTTP statuses, and the mapping from actor errors to them."""

from actors.errors import (
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    RaysfuError,
    RoomClosedError,
)

# https://twitchtv.github.io/twirp/docs/spec_v7.html#error-codes (the subset we answer with)
STATUS = {
    "invalid_argument": 400,
    "malformed": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "bad_route": 404,
    "not_found": 404,
    "already_exists": 409,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "internal": 500,
    "unavailable": 503,
}


class TwirpError(Exception):
    def __init__(self, code: str, msg: str) -> None:
        if code not in STATUS:
            raise ValueError(f"not a Twirp error code we answer with: {code}")
        super().__init__(msg)
        self.code = code
        self.msg = msg

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def body(self) -> dict[str, str]:
        return {"code": self.code, "msg": self.msg}


# Order matters: RoomClosedError before its base class. Limits are invalid_argument, as LiveKit answers
# "metadata size exceeds limits" and the like.
_ACTOR_CODES: tuple[tuple[type[RaysfuError], str], ...] = (
    (RoomClosedError, "not_found"),
    (NotFoundError, "not_found"),
    (PermissionDeniedError, "permission_denied"),
    (LimitExceededError, "invalid_argument"),
    (InvalidRequestError, "invalid_argument"),
)


def actor_error(exc: BaseException) -> RaysfuError | None:
    """The actors.errors error inside `exc`, which may be a RayTaskError wrapping it.

    The cause comes first: Ray's wrapper is an instance of the cause's class too, but its text is a traceback.
    """
    for candidate in (getattr(exc, "cause", None), exc):
        if isinstance(candidate, RaysfuError):
            return candidate
    return None


def twirp_error(exc: RaysfuError) -> TwirpError:
    for cls, code in _ACTOR_CODES:
        if isinstance(exc, cls):
            return TwirpError(code, str(exc))
    return TwirpError("internal", str(exc))
