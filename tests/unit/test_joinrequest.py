"""`/rtc/v1`'s join_request parameter: what decodes, and what is refused (with LiveKit's reasons)."""

import base64
import gzip

import pytest
from livekit.protocol import models, rtc

from gateway.joinrequest import MAX_JOIN_REQUEST, JoinRequestError, parse_join_request, sdk_name


def wrap(data: bytes, compression: int = rtc.WrappedJoinRequest.NONE, pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(
        rtc.WrappedJoinRequest(compression=compression, join_request=data).SerializeToString()
    ).decode()
    return text if pad else text.rstrip("=")


def test_plain_and_gzipped_requests_decode_padded_or_not() -> None:
    request = rtc.JoinRequest(client_info=models.ClientInfo(sdk=models.ClientInfo.JS, protocol=16))
    data = request.SerializeToString()
    for value in (wrap(data), wrap(data, pad=False), wrap(gzip.compress(data), rtc.WrappedJoinRequest.GZIP)):
        assert parse_join_request(value) == request


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "join_request is required"),
        ("", "join_request is required"),
        ("%%%", "cannot base64 decode"),
        (base64.urlsafe_b64encode(b"\xff\xff").decode(), "cannot unmarshal wrapped"),
        (wrap(b"\x0a\xff"), "cannot unmarshal join request"),
        (wrap(b"not gzip", rtc.WrappedJoinRequest.GZIP), "cannot read decompressed"),
        (wrap(gzip.compress(b"\0" * (MAX_JOIN_REQUEST + 1)), rtc.WrappedJoinRequest.GZIP), "too large"),
        (wrap(gzip.compress(b"\0" * 100)[:-8], rtc.WrappedJoinRequest.GZIP), "cannot read decompressed"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(value: str | None, reason: str) -> None:
    with pytest.raises(JoinRequestError, match=reason):
        parse_join_request(value)


def test_sdk_names_match_the_v0_url_parameter() -> None:
    assert sdk_name(models.ClientInfo(sdk=models.ClientInfo.RUST)) == "rust"
    assert sdk_name(models.ClientInfo(sdk=models.ClientInfo.REACT_NATIVE)) == "reactnative"
    assert sdk_name(models.ClientInfo()) == ""
