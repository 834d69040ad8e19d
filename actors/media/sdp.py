"""Reject SDP that aiortc would accept silently: it applies text with no media or no ICE/DTLS parameters."""

from aiortc.sdp import SessionDescription

from actors.errors import SdpError


def check_sdp(sdp: str) -> None:
    """Raise SdpError unless `sdp` parses and every active m-line has ICE credentials and a fingerprint."""
    if not sdp.startswith("v=0"):
        raise SdpError("not an SDP: it must start with v=0")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as e:  # aiortc's parser raises assertions, ValueError, KeyError, ...
        raise SdpError(f"unparseable SDP: {type(e).__name__}: {e}") from None
    if not parsed.media:
        raise SdpError("SDP has no media sections")
    for index, media in enumerate(parsed.media):
        if media.port == 0:
            continue  # rejected or bundle-only section
        ice, dtls = media.ice, media.dtls
        if ice is None or not ice.usernameFragment or not ice.password:
            raise SdpError(f"m-line {index} has no ICE credentials")
        if dtls is None or not dtls.fingerprints:
            raise SdpError(f"m-line {index} has no DTLS fingerprint")
