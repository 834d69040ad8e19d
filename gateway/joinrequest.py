"""`/rtc/v1`'s `join_request` URL parameter: a base64url WrappedJoinRequest, its JoinRequest plain or gzipped.

A missing or undecodable parameter is refused with 400, as LiveKit does (its reasons, rtcservice.go), before
anything about the session is created.
"""

import base64
import binascii
import zlib

from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc

# LiveKit's bound (http.DefaultMaxHeaderBytes) on a JoinRequest, plain or once decompressed.
MAX_JOIN_REQUEST = 1 << 20


class JoinRequestError(Exception):
    """Why a `join_request` parameter is refused (answered with 400)."""


def parse_join_request(value: str | None) -> rtc.JoinRequest:
    if not value:
        raise JoinRequestError("join_request is required")
    try:
        wrapped_bytes = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JoinRequestError("cannot base64 decode wrapped join request") from exc
    try:
        wrapped = rtc.WrappedJoinRequest.FromString(wrapped_bytes)
    except DecodeError as exc:
        raise JoinRequestError("cannot unmarshal wrapped join request") from exc
    data = wrapped.join_request
    if wrapped.compression == rtc.WrappedJoinRequest.GZIP:
        data = _gunzip(data)
    elif wrapped.compression != rtc.WrappedJoinRequest.NONE:
        raise JoinRequestError(f"unknown join request compression {wrapped.compression}")
    if len(data) > MAX_JOIN_REQUEST:
        raise JoinRequestError("join request too large")
    try:
        return rtc.JoinRequest.FromString(data)
    except DecodeError as exc:
        raise JoinRequestError("cannot unmarshal join request") from exc


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_JOIN_REQUEST + 1)
    except zlib.error as exc:
        raise JoinRequestError("cannot read decompressed join request") from exc
    if len(out) > MAX_JOIN_REQUEST or inflater.unconsumed_tail:
        raise JoinRequestError("join request too large")
    if not inflater.eof:
        raise JoinRequestError("cannot read decompressed join request")
    return out


def sdk_name(info: models.ClientInfo) -> str:
    """The SDK as the v0 URL names it (`sdk=js`, `rust`, `python`, `reactnative`, ...)."""
    return models.ClientInfo.SDK.Name(info.sdk).lower().replace("_", "") if info.sdk else ""
