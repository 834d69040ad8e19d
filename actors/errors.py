"""Errors raised by actors and mapped by the gateway to signalling or Twirp responses.

They cross Ray calls (wrapped in RayTaskError; `error.cause` or `isinstance` on the task error holds them),
so they take a single message argument and pickle cleanly.
"""


class RaysfuError(Exception):
    """Base class: a request refused for a reason the client should hear."""


class NotFoundError(RaysfuError):
    pass


class PermissionDeniedError(RaysfuError):
    pass


class InvalidRequestError(RaysfuError):
    pass


class LimitExceededError(RaysfuError):
    pass


class ClusterFullError(RaysfuError):
    """No media worker of the cluster has room for another participant (all at their load limit)."""


class RoomClosedError(RaysfuError):
    """The room is closing; a join should retry with a new Room actor."""


class ActorGone(RaysfuError):
    """The hosted actor a message was for has ended, or its host (a MediaWorker process) died."""


class SdpError(InvalidRequestError):
    """An SDP we cannot parse or apply."""


class CandidateError(InvalidRequestError):
    """An ICE candidate we cannot parse or apply."""


def unwrap(exc: BaseException) -> BaseException:
    """The error an actor raised, out of the RayTaskError that carried it across the call."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
