import base64
import json
import logging
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import jwt
import pytest
from livekit import api
from livekit.protocol import models

from actors.limits import MAX_NAME
from gateway import auth

KEYS = {"devkey": "secret", "other": "another-secret"}


def sdk_token(identity: str = "alice", secret: str = "secret", key: str = "devkey", **grants: Any) -> str:
    token = api.AccessToken(key, secret).with_identity(identity)
    return token.with_grants(api.VideoGrants(**grants)).to_jwt()


def hand_token(claims: dict[str, Any], secret: str = "secret", algorithm: str = "HS256") -> str:
    now = int(time.time())
    payload = {"iss": "devkey", "sub": "alice", "nbf": now, "exp": now + 600, **claims}
    return jwt.encode(payload, secret, algorithm=algorithm)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def refusal(token: str | None) -> auth.AuthError:
    with pytest.raises(auth.AuthError) as info:
        auth.verify_token(token, KEYS)
    return info.value


def test_sdk_token_verifies_with_every_claim() -> None:
    token = (
        api.AccessToken("devkey", "secret")
        .with_identity("alice")
        .with_name("Alice")
        .with_metadata("meta")
        .with_attributes({"a": "1"})
        .with_kind("agent")
        .with_grants(api.VideoGrants(room_join=True, room="r1", can_publish_sources=["camera"], hidden=True))
        .to_jwt()
    )
    claims = auth.verify_token(token, KEYS)
    assert (claims.api_key, claims.identity, claims.name, claims.metadata) == (
        "devkey",
        "alice",
        "Alice",
        "meta",
    )
    assert claims.attributes == {"a": "1"} and claims.kind == "agent"
    assert claims.video.room_join and claims.video.room == "r1" and claims.video.hidden
    assert claims.video.can_publish_sources == ("camera",)
    assert claims.expires_at > time.time() + 5 * 3600


def test_second_key_verifies_with_its_own_secret() -> None:
    assert auth.verify_token(sdk_token(key="other", secret="another-secret"), KEYS).api_key == "other"


def test_grant_defaults_match_livekit() -> None:
    video = auth.verify_token(hand_token({"video": {"roomJoin": True, "room": "r1"}}), KEYS).video
    assert video.can_publish and video.can_subscribe and video.can_publish_data
    assert not video.can_update_own_metadata and not video.hidden and not video.room_admin
    assert video.can_publish_sources == ()
    # canPublishData follows canPublish when absent (LiveKit's GetCanPublishData).
    no_publish = auth.verify_token(hand_token({"video": {"canPublish": False}}), KEYS).video
    assert not no_publish.can_publish and not no_publish.can_publish_data and no_publish.can_subscribe
    assert auth.verify_token(hand_token({}), KEYS).video == auth.VideoGrant()


def test_participant_permission() -> None:
    grant = auth.VideoGrant(
        can_publish=False,
        can_publish_sources=("camera", "screen_share", "bogus"),
        can_update_own_metadata=True,
    )
    permission = auth.participant_permission(grant)
    assert not permission.can_publish and permission.can_subscribe and permission.can_publish_data
    assert list(permission.can_publish_sources) == [
        models.TrackSource.CAMERA,
        models.TrackSource.SCREEN_SHARE,
    ]
    assert permission.can_update_metadata and not permission.hidden


def test_expired_token_refused() -> None:
    now = int(time.time())
    error = refusal(hand_token({"nbf": now - 7200, "exp": now - 3600}))
    assert (error.status, error.reason) == (401, "token expired")


def test_token_not_valid_yet_refused() -> None:
    error = refusal(hand_token({"nbf": int(time.time()) + 3600}))
    assert error.status == 401 and "not valid yet" in error.reason


def test_small_clock_skew_tolerated() -> None:
    assert auth.verify_token(hand_token({"nbf": int(time.time()) + 5}), KEYS).identity == "alice"


def test_other_secret_refused() -> None:
    error = refusal(sdk_token(secret="not-the-secret"))
    assert (error.status, error.reason) == (401, "invalid signature")


def test_unknown_api_key_refused() -> None:
    error = refusal(sdk_token(key="nobody"))
    assert error.status == 401 and "unknown API key" in error.reason


def test_alg_none_refused() -> None:
    now = int(time.time())
    claims = {"iss": "devkey", "sub": "alice", "nbf": now, "exp": now + 600, "video": {"roomJoin": True}}
    error = refusal(f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.")
    assert error.status == 401 and "algorithm" in error.reason


@pytest.mark.parametrize("algorithm", ["HS512", "HS384"])
def test_other_hmac_algorithms_refused(algorithm: str) -> None:
    error = refusal(hand_token({}, secret="secret" * 12, algorithm=algorithm))
    assert error.status == 401 and algorithm in error.reason


def test_rs256_refused() -> None:
    # An RS256 header over an HMAC signature: the classic key-confusion shape.
    now = int(time.time())
    token = f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64({'iss': 'devkey', 'exp': now + 60})}.c2ln"
    assert "algorithm" in refusal(token).reason


def test_missing_and_garbage_tokens_refused() -> None:
    assert (refusal(None).status, refusal(None).reason) == (401, "missing access token")
    assert refusal("").status == 401
    assert "malformed" in refusal("not-a-jwt").reason


def test_missing_exp_refused() -> None:
    token = jwt.encode({"iss": "devkey", "sub": "alice"}, "secret", algorithm="HS256")
    assert "exp" in refusal(token).reason


def test_refusals_are_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = sdk_token(secret="not-the-secret")
    with caplog.at_level(logging.INFO, logger="gateway.auth"):
        refusal(token)
    assert [r.getMessage() for r in caplog.records] == ["refused (401): invalid signature"]
    assert token not in caplog.text and "secret" not in caplog.text


def test_check_join() -> None:
    claims = auth.verify_token(sdk_token(room_join=True, room="r1"), KEYS)
    assert auth.check_join(claims) == "r1"
    assert auth.check_join(claims, "r1") == "r1"
    with pytest.raises(auth.AuthError) as info:
        auth.check_join(claims, "r2")
    assert (info.value.status, info.value.reason) == (403, "no permission to join room r2")


def test_check_join_needs_room_join_and_room() -> None:
    for grants in ({"room": "r1"}, {"room_join": True}):
        with pytest.raises(auth.AuthError) as info:
            auth.check_join(auth.verify_token(hand_token({"video": grants}), KEYS))
        assert info.value.status == 403


def test_check_join_identity_limits() -> None:
    long_identity = auth.verify_token(sdk_token("x" * (MAX_NAME + 1), room_join=True, room="r1"), KEYS)
    with pytest.raises(auth.AuthError) as info:
        auth.check_join(long_identity)
    assert info.value.status == 400 and "identity" in info.value.reason
    no_identity = auth.verify_token(hand_token({"sub": "", "video": {"roomJoin": True, "room": "r1"}}), KEYS)
    with pytest.raises(auth.AuthError):
        auth.check_join(no_identity)
    assert (
        auth.check_join(auth.verify_token(sdk_token("x" * MAX_NAME, room_join=True, room="r1"), KEYS)) == "r1"
    )


def test_room_service_grants() -> None:
    admin = auth.verify_token(sdk_token(room_admin=True, room="r1"), KEYS)
    auth.check_room_admin(admin, "r1")
    with pytest.raises(auth.AuthError):
        auth.check_room_admin(admin, "r2")
    with pytest.raises(auth.AuthError):
        auth.check_room_create(admin)
    with pytest.raises(auth.AuthError):
        auth.check_room_list(admin)
    creator = auth.verify_token(sdk_token(room_create=True, room_list=True), KEYS)
    auth.check_room_create(creator)
    auth.check_room_list(creator)
    with pytest.raises(auth.AuthError):
        auth.check_room_admin(creator, "")


def test_mint_token_reads_back_in_livekit_sdk() -> None:
    grant = auth.VideoGrant(room_join=True, can_publish=False, can_publish_sources=("microphone",))
    token = auth.mint_token("devkey", "secret", "bob", "r2", grant, name="Bob", metadata="m", ttl=60)
    sdk = api.TokenVerifier("devkey", "secret", leeway=timedelta(0)).verify(token)
    assert (sdk.identity, sdk.name, sdk.metadata) == ("bob", "Bob", "m")
    assert sdk.video is not None and sdk.video.room == "r2" and sdk.video.room_join
    assert sdk.video.can_publish is False and sdk.video.can_publish_sources == ["microphone"]
    claims = auth.verify_token(token, KEYS)
    assert claims.video == replace(grant, room="r2")
    assert 55 <= claims.expires_at - time.time() <= 60


def test_token_from_request() -> None:
    assert auth.token_from_request({"Authorization": "Bearer abc"}, {}) == "abc"
    assert auth.token_from_request({"authorization": "Bearer abc"}, {"access_token": "q"}) == "abc"
    assert auth.token_from_request({}, {"access_token": "q"}) == "q"
    assert auth.token_from_request({"authorization": "Basic abc"}, {}) is None
    assert auth.token_from_request({}, {}) is None


def test_oversized_token_is_refused_before_it_is_decoded() -> None:
    # Not even a JWT: were it decoded, the refusal would be "malformed".
    error = refusal("x" * (auth.MAX_TOKEN + 1))
    assert (error.status, error.reason) == (431, f"access token is larger than {auth.MAX_TOKEN} bytes")
    assert refusal("x" * auth.MAX_TOKEN).status == 401
