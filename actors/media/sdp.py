"""Reject SDP that aiortc would accept silently: it applies text with no media or no ICE/DTLS parameters."""

from dataclasses import dataclass, field

from aiortc.sdp import SessionDescription

from actors.errors import SdpError


def check_sdp(sdp: str) -> None:
    """Raise SdpError unless `sdp` parses, every m-line has a mid of its own and the BUNDLE group names only
    those (else aiortc leaves a section without a transport, and fails on it later), and every active m-line
    has ICE credentials and a fingerprint."""
    if not sdp.startswith("v=0"):
        raise SdpError("not an SDP: it must start with v=0")
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as e:  # aiortc's parser raises assertions, ValueError, KeyError, ...
        raise SdpError(f"unparseable SDP: {type(e).__name__}: {e}") from None
    if not parsed.media:
        raise SdpError("SDP has no media sections")
    mids = [media.rtp.muxId for media in parsed.media]
    if not all(mids) or len(set(mids)) != len(mids):
        raise SdpError(f"every m-line needs a mid of its own (a=mid), found {mids}")
    for group in parsed.group:
        missing = [mid for mid in group.items if mid not in mids]
        if group.semantic == "BUNDLE" and missing:  # aiortc would bundle sections onto a missing transport
            raise SdpError(f"the BUNDLE group names mids with no m-line: {missing}")
    for index, media in enumerate(parsed.media):
        if media.port == 0:
            continue  # rejected or bundle-only section
        ice, dtls = media.ice, media.dtls
        if ice is None or not ice.usernameFragment or not ice.password:
            raise SdpError(f"m-line {index} has no ICE credentials")
        if dtls is None or not dtls.fingerprints:
            raise SdpError(f"m-line {index} has no DTLS fingerprint")


@dataclass(frozen=True)
class OfferSection:
    """What the forwarder needs from one m-section of a client's raw offer (aiortc drops some of it)."""

    mid: str
    kind: str
    port: int
    direction: str
    msid_track: str | None  # the second field of a=msid: the client's track id (LiveKit: the AddTrack cid)
    rids: tuple[str, ...]  # a=rid:<r> send
    simulcast: str | None  # the value of a=simulcast:send
    extensions: dict[str, int] = field(default_factory=dict)

    @property
    def sending(self) -> bool:
        return self.port != 0 and self.direction in ("sendonly", "sendrecv")


_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def offer_sections(sdp: str) -> list[OfferSection]:
    sections: list[OfferSection] = []
    current: list[str] | None = None
    blocks: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
    for block in blocks:
        m = block[0][2:].split()
        mid = direction = ""
        msid: str | None = None
        simulcast: str | None = None
        rids: list[str] = []
        extensions: dict[str, int] = {}
        for line in block[1:]:
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line[2:] in _DIRECTIONS:
                direction = line[2:]
            elif line.startswith("a=msid:"):
                parts = line[7:].split()
                msid = parts[1] if len(parts) > 1 else None
            elif line.startswith("a=rid:"):
                parts = line[6:].split()
                if len(parts) > 1 and parts[1] == "send":
                    rids.append(parts[0])
            elif line.startswith("a=simulcast:send "):
                simulcast = line.split(" ", 1)[1].strip()
            elif line.startswith("a=extmap:"):
                parts = line[9:].split()
                ext_id = parts[0].split("/")[0] if parts else ""
                if len(parts) > 1 and ext_id.isdigit():
                    extensions[parts[1]] = int(ext_id)
        port = int(m[1]) if len(m) > 1 and m[1].isdigit() else 0
        sections.append(
            OfferSection(
                mid,
                m[0] if m else "",
                port,
                direction or "sendrecv",
                msid,
                tuple(rids),
                simulcast,
                extensions,
            )
        )
    return sections


def accept_simulcast(answer: str, accepted: dict[str, OfferSection]) -> str:
    """Add "a=rid:<r> recv" and "a=simulcast:recv" after a=mid of each accepted simulcast section
    (aiortc neither writes nor reads these lines); without them libwebrtc sends only one layer."""
    out: list[str] = []
    for line in answer.split("\r\n"):
        out.append(line)
        if line.startswith("a=mid:"):
            section = accepted.get(line[6:].strip())
            if section is not None and section.rids and section.simulcast:
                out.extend(f"a=rid:{rid} recv" for rid in section.rids)
                out.append(f"a=simulcast:recv {section.simulcast}")
    return "\r\n".join(out)
