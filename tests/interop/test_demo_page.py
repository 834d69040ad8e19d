"""The demo page at `/` in headless Chromium: two tabs join one room through its form (the `--dev` server
mints their tokens), each publishes Chromium's fake camera and microphone and shows the other's video.

The fake microphone plays a voice-like sound (SPEECH) rather than Chromium's beep: a beep a second is
too short to make anybody an active speaker (LiveKit's rule: 40 % of a 400 ms window at -35 dBov or louder).

The screenshots are kept in the test's tmp_path (printed; `pytest -s` shows the path)."""

import math
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.interop.browser import browser_condition, launch_chromium
from tests.interop.sdk import Server

pytestmark = pytest.mark.timeout(90)

# A frame of the other tab's tile, drawn on a canvas: its size, and the spread of its pixels' luma.
FRAME_STATS = """identity => {
  const video = document.querySelector(`#tiles figure[data-identity="${identity}"] video`);
  if (!video || video.videoWidth === 0) return null;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0);
  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0, squares = 0;
  for (let i = 0; i < data.length; i += 4) {
    const luma = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    sum += luma;
    squares += luma * luma;
  }
  const n = data.length / 4, mean = sum / n;
  return { width: canvas.width, height: canvas.height, mean, stddev: Math.sqrt(squares / n - mean * mean) };
}"""


SPEECH_RATE = 48000


def write_speech(path: Path, seconds: float = 2.0) -> None:
    """A 16-bit mono WAV: a 180 Hz voice with harmonics, its loudness swelling four times a second."""
    frames = bytearray()
    for n in range(int(seconds * SPEECH_RATE)):
        t = n / SPEECH_RATE
        voice = sum(math.sin(2 * math.pi * 180 * k * t) / k for k in (1, 2, 3, 4))
        swell = 0.6 + 0.4 * math.sin(2 * math.pi * 4 * t)
        frames += struct.pack("<h", int(12000 * swell * voice / 2.1))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SPEECH_RATE)
        out.writeframes(bytes(frames))


@pytest.fixture
async def talking_browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium whose fake microphone plays write_speech's sound, looped."""
    speech = tmp_path / "speech.wav"
    write_speech(speech)
    async with launch_chromium([f"--use-file-for-fake-audio-capture={speech}"]) as chromium:
        yield chromium


async def join(page: Page, server: Server, name: str, room: str) -> None:
    await page.goto(f"{server.http_url}/")
    await page.fill("#name", name)
    await page.fill("#room", room)
    await page.click("#join-button")


async def frame_stats(page: Page, identity: str) -> dict[str, Any]:
    stats: dict[str, Any] | None = await page.evaluate(f"({FRAME_STATS})({identity!r})")
    assert stats is not None, f"no video of {identity}"
    return stats


async def test_two_tabs_join_through_the_demo_page_and_see_each_other(
    talking_browser: Browser, server: Server, room_name: str, tmp_path: Path
) -> None:
    tabs: dict[str, Page] = {}
    for name in ("alice", "bob"):
        context = await talking_browser.new_context(viewport={"width": 1000, "height": 700})
        tabs[name] = await context.new_page()
        await join(tabs[name], server, name, room_name)
    try:
        for name, other in (("alice", "bob"), ("bob", "alice")):
            page = tabs[name]
            await browser_condition(
                page,
                f"""(() => {{
                  const v = document.querySelector('#tiles figure[data-identity="{other}"] video');
                  return v && v.videoWidth > 0 && v.currentTime > 0.5;
                }})()""",
                f"{name}'s tab playing {other}'s video",
                timeout=30.0,
            )
            stats = await frame_stats(page, other)
            # Chromium's fake camera: a moving pattern, not a black or uniform frame.
            assert stats["width"] >= 320 and stats["height"] >= 180, stats
            assert stats["stddev"] > 10 and 10 < stats["mean"] < 245, stats
            items = await page.locator("#participants li").all_inner_texts()
            assert sorted(item.split(":")[0] for item in items) == sorted([name + " (you)", other]), items
        # Both talk: SpeakersChanged marks the speakers in the list and on their tiles.
        await browser_condition(
            tabs["alice"],
            "document.querySelector('#participants li.speaking[data-identity=\"bob\"]')"
            " && document.querySelector('#tiles figure.speaking[data-identity=\"bob\"]')",
            "bob marked as the active speaker in alice's tab",
        )
        # The mute button mutes alice's microphone; bob's list says so.
        await tabs["alice"].click("#mic")
        await browser_condition(
            tabs["bob"],
            "[...document.querySelectorAll('#participants li')].some("
            "li => li.dataset.identity === 'alice' && li.textContent.includes('mic off'))",
            "alice's microphone shown muted in bob's tab",
        )
        for name, page in tabs.items():
            path = tmp_path / f"demo-{name}.png"
            await page.screenshot(path=str(path))
            print(f"screenshot of {name}'s tab: {path}")
    finally:
        for page in tabs.values():
            await page.context.close()
