"""The checks an offer passes before aiortc sees it (actors.media.sdp.check_sdp)."""

import pytest

from actors.errors import SdpError
from actors.media.sdp import check_sdp
from tests.fuzz import client_offer


async def test_a_real_offer_passes() -> None:
    check_sdp(await client_offer())


async def test_a_repeated_or_missing_mid_is_refused() -> None:
    """Found by tests/interop/test_fuzz.py: aiortc gave such a section no transport, and failed on it."""
    offer = await client_offer()
    with pytest.raises(SdpError, match="a mid of its own"):
        check_sdp(offer.replace("a=mid:1\r\n", "a=mid:0\r\n"))
    with pytest.raises(SdpError, match="a mid of its own"):
        check_sdp(offer.replace("a=mid:1\r\n", ""))


async def test_a_bundle_group_naming_a_missing_mid_is_refused() -> None:
    offer = await client_offer()
    with pytest.raises(SdpError, match="BUNDLE group names mids with no m-line: \\['7'\\]"):
        check_sdp(offer.replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 7 0 1 2"))
