"""LiveKit's data-packet rules (actors/media/data.py), without a network."""

import pytest
from livekit.protocol import models

from actors.directory import Directory, Member
from actors.limits import MAX_DATA_PACKET
from actors.media.data import LOSSY_LABEL, RELIABLE_LABEL, DataPacketRefused, route

ALICE = Member("PA_alice", "alice", "media:n/0", can_publish_data=True)
BOB = Member("PA_bob", "bob", "media:n/0", can_publish_data=True)
CAROL = Member("PA_carol", "carol", "media:n/1", can_publish_data=True)
MUTE = Member("PA_mute", "mute", "media:n/0", can_publish_data=False)
ROOM = Directory("r", 1, (ALICE, BOB, CAROL, MUTE))


def user_packet(**user: object) -> models.DataPacket:
    return models.DataPacket(
        participant_identity="forged",
        participant_sid="PA_forged",
        sequence=42,
        user=models.UserPacket(
            participant_identity="forged", participant_sid="PA_forged", payload=b"hi", topic="chat", **user
        ),
    )


def test_sender_is_overwritten_and_other_fields_kept() -> None:
    routed = route(user_packet().SerializeToString(), RELIABLE_LABEL, ALICE, ROOM)
    packet = models.DataPacket.FromString(routed.payload)
    assert (packet.participant_identity, packet.participant_sid) == ("alice", "PA_alice")
    assert (packet.user.participant_identity, packet.user.participant_sid) == ("alice", "PA_alice")
    assert (packet.sequence, packet.user.topic, packet.user.payload) == (42, "chat", b"hi")


def test_broadcast_goes_to_everyone_but_the_sender() -> None:
    routed = route(user_packet().SerializeToString(), RELIABLE_LABEL, ALICE, ROOM)
    assert routed.dest_sids == ("PA_bob", "PA_carol", "PA_mute")


def test_destinations_union_of_identities_and_sids() -> None:
    packet = user_packet(destination_identities=["carol", "nobody"])
    packet.destination_identities.append("bob")
    assert route(packet.SerializeToString(), RELIABLE_LABEL, ALICE, ROOM).dest_sids == ("PA_bob", "PA_carol")
    by_sid = user_packet(destination_sids=["PA_mute", "PA_ghost"])
    assert route(by_sid.SerializeToString(), RELIABLE_LABEL, ALICE, ROOM).dest_sids == ("PA_mute",)


def test_only_unknown_or_self_destinations_reach_nobody() -> None:
    packet = user_packet(destination_identities=["nobody", "alice"])
    assert route(packet.SerializeToString(), RELIABLE_LABEL, ALICE, ROOM).dest_sids == ()


@pytest.mark.parametrize(
    ("label", "sent_kind", "reliable", "kind"),
    [
        (RELIABLE_LABEL, models.DataPacket.LOSSY, True, models.DataPacket.RELIABLE),
        (LOSSY_LABEL, models.DataPacket.RELIABLE, False, models.DataPacket.LOSSY),
    ],
)
def test_reliability_comes_from_the_channel_label(
    label: str, sent_kind: int, reliable: bool, kind: int
) -> None:
    packet = user_packet()
    packet.kind = sent_kind
    routed = route(packet.SerializeToString(), label, ALICE, ROOM)
    assert routed.reliable is reliable
    assert models.DataPacket.FromString(routed.payload).kind == kind


def test_non_user_packets_keep_their_payload() -> None:
    packet = models.DataPacket(rpc_request=models.RpcRequest(id="1", method="m", payload="p"))
    routed = route(packet.SerializeToString(), RELIABLE_LABEL, BOB, ROOM)
    out = models.DataPacket.FromString(routed.payload)
    assert out.rpc_request.method == "m" and out.participant_identity == "bob"


@pytest.mark.parametrize(
    ("raw", "sender", "reason"),
    [
        (user_packet().SerializeToString(), MUTE, "no_permission"),
        (b"\xff\xff\xff", ALICE, "unparseable"),
        (b"\x00" * (MAX_DATA_PACKET + 1), ALICE, "oversized"),
    ],
)
def test_refusals(raw: bytes, sender: Member, reason: str) -> None:
    with pytest.raises(DataPacketRefused) as refused:
        route(raw, RELIABLE_LABEL, sender, ROOM)
    assert refused.value.reason == reason
