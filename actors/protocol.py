"""The messages raysfu builds from LiveKit's protocol, in one place."""

from livekit.protocol import models, rtc
from livekit.protocol import room as room_pb

from actors.placement import worker_node_label

SERVER_VERSION = "1.9.0"  # the SDKs gate features (RPC needs >= 1.8.0) on LiveKit's server version
PROTOCOL = 16
PING_INTERVAL = 5
PING_TIMEOUT = 15


def join_response(
    room_info: models.Room,
    info: models.ParticipantInfo,
    others: list[models.ParticipantInfo],
    worker: str,
    single_pc: bool = False,
) -> bytes:
    """The session's first message (a serialized SignalResponse), which the gateway sends itself as soon as
    the room seated the participant, ahead of anything in the outbox. With one peer connection (`single_pc`)
    the client's is primary, as in LiveKit."""
    join = rtc.JoinResponse(
        room=room_info,
        participant=info,
        other_participants=others,
        server_version=SERVER_VERSION,
        subscriber_primary=not single_pc,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        server_info=server_info(worker),
    )
    return rtc.SignalResponse(join=join).SerializeToString()


def reconnect_response(worker: str, last_message_seq: int) -> bytes:
    """A resumed session's first message (LiveKit's ReconnectResponse, serialized like join_response):
    `last_message_seq` is the last reliable data sequence received from the client, which re-sends what
    follows it."""
    response = rtc.ReconnectResponse(server_info=server_info(worker), last_message_seq=last_message_seq)
    return rtc.SignalResponse(reconnect=response).SerializeToString()


def server_info(worker: str) -> models.ServerInfo:
    return models.ServerInfo(
        edition=models.ServerInfo.Standard,
        version=SERVER_VERSION,
        protocol=PROTOCOL,
        node_id=worker_node_label(worker),
        debug_info="raysfu",
    )


def leave(reason: models.DisconnectReason, reconnect: bool = False) -> rtc.SignalResponse:
    """A LeaveRequest: DISCONNECT, or with `reconnect` RECONNECT (the SDKs rejoin at once, a full join)."""
    action = rtc.LeaveRequest.RECONNECT if reconnect else rtc.LeaveRequest.DISCONNECT
    return rtc.SignalResponse(leave=rtc.LeaveRequest(reason=reason, action=action, can_reconnect=reconnect))


def disconnected(
    info: models.ParticipantInfo, reason: models.DisconnectReason | None = None
) -> models.ParticipantInfo:
    """What the others are told of a participant that left (or became hidden): its info, DISCONNECTED."""
    gone = models.ParticipantInfo()
    gone.CopyFrom(info)
    gone.state = models.ParticipantInfo.DISCONNECTED
    if reason is not None:
        gone.disconnect_reason = reason
        gone.version += 1
    return gone


def subscription_track_sids(req: rtc.UpdateSubscription | room_pb.UpdateSubscriptionsRequest) -> list[str]:
    """The track sids a subscription change names, directly or per participant."""
    return list(req.track_sids) + [sid for p in req.participant_tracks for sid in p.track_sids]


def participant_kind(name: str) -> int:
    """A token's `kind` ("standard", "agent", ...) as ParticipantInfo.Kind; unknown kinds are STANDARD."""
    try:
        return int(models.ParticipantInfo.Kind.Value(name.upper()))
    except ValueError:
        return int(models.ParticipantInfo.STANDARD)
