import pickle

from livekit.protocol import models, rtc
from ray import cloudpickle

from actors import ids, limits
from actors.events import ParticipantsChanged


def test_sids_have_livekit_shape() -> None:
    for make, prefix in ((ids.room_sid, "RM_"), (ids.participant_sid, "PA_"), (ids.track_sid, "TR_")):
        sid = make()
        assert sid.startswith(prefix) and len(sid) == 15
        assert set(sid[3:]) <= set(ids.BASE57)
    assert len({ids.track_sid() for _ in range(1000)}) == 1000


def test_participant_field_limits() -> None:
    assert limits.check_participant_fields("n" * 256, "m" * limits.MAX_METADATA, {"k": "v"}) is None
    assert "name" in (limits.check_participant_fields(name="n" * 257) or "")
    assert "metadata" in (
        limits.check_participant_fields(metadata="é" * (limits.MAX_METADATA // 2 + 1)) or ""
    )
    assert "attributes" in (
        limits.check_participant_fields(attributes={"k": "v" * limits.MAX_ATTRIBUTES}) or ""
    )


def test_livekit_messages_cross_ray_pickling() -> None:
    info = models.ParticipantInfo(
        sid="PA_x", identity="a", permission=models.ParticipantPermission(can_publish=True)
    )
    info.tracks.add(sid="TR_y", type=models.TrackType.VIDEO)
    event = ParticipantsChanged((info,))
    for dumps, loads in ((cloudpickle.dumps, cloudpickle.loads), (pickle.dumps, pickle.loads)):
        back = loads(dumps(event))
        assert back == event and back.participants[0].tracks[0].sid == "TR_y"
    nested = rtc.LeaveRequest.Action.Value("DISCONNECT")
    assert loads(dumps(rtc.SignalResponse(leave=rtc.LeaveRequest(action=nested)))).leave.action == nested
