"""LiveKit's webhooks: a room's events POSTed as JSON WebhookEvents to the configured URLs.

Each media worker has one `Webhooks`; the Rooms it hosts hand it their events with `notify`, which only
enqueues (a Room never waits for HTTP). Events are delivered one at a time per URL and room, so a receiver
sees a room's events in the order they happened, and a slow or dead receiver holds up only its own queue.

As LiveKit sends them (livekit/protocol webhook/url_notifier.go): the body is the event in protobuf's JSON
mapping, `Content-Type: application/webhook+json`, and `Authorization` is a JWT signed with the configured
key (issuer = the key, valid 5 minutes) whose `sha256` claim is the base64 SHA-256 of the body, which is
what the server SDKs' WebhookReceiver checks. A connection error, a timeout, a 429 or a 5xx is retried with
exponential backoff; after the last attempt (or when a queue is full) the event is dropped, logged, and
counted in the `numDropped` of the next event sent to that URL.
"""

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import aiohttp
import jwt
from google.protobuf import json_format
from livekit.protocol import models, webhook

from actors.media.ratelog import RateLimitedLog
from actors.settings import WebhookSettings
from actors.tasks import spawn

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

CONTENT_TYPE = "application/webhook+json"
TOKEN_TTL = 5 * 60  # seconds, as LiveKit
REQUEST_TIMEOUT = 10.0  # seconds per attempt
ATTEMPTS = 6  # the first and five retries
BACKOFF_FIRST = 0.5  # seconds before the first retry, doubling up to BACKOFF_MAX
BACKOFF_MAX = 30.0
MAX_QUEUED = 1000  # events waiting per URL and room; beyond it new ones are dropped


def sign(body: bytes, api_key: str, api_secret: str) -> str:
    """The `Authorization` value for `body`: a JWT from `api_key` carrying the body's hash."""
    now = int(time.time())
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    claims = {"iss": api_key, "nbf": now, "exp": now + TOKEN_TTL, "sha256": digest}
    return jwt.encode(claims, api_secret, algorithm="HS256")


def _may_pass_later(status: int) -> bool:
    """Whether an answer is worth another attempt (go-retryablehttp's rule, which LiveKit uses): too many
    requests, or a server error other than 501 Not Implemented; any other refusal would come again."""
    return status == 429 or (status >= 500 and status != 501)


def event_id() -> str:
    return "EV_" + secrets.token_urlsafe(9)


@dataclass
class _Queue:
    """One URL's events of one room, in order, and the task delivering them."""

    events: deque[webhook.WebhookEvent] = field(default_factory=deque)
    task: "asyncio.Future[object] | None" = None


class Webhooks:
    def __init__(self, settings: WebhookSettings, owner: str) -> None:
        self._settings = settings
        self._owner = owner
        self._queues: dict[tuple[str, str], _Queue] = {}
        self._dropped: Counter[str] = Counter()  # per URL, since the last event it was sent
        self._session: aiohttp.ClientSession | None = None
        self.counters: Counter[str] = Counter()

    @property
    def enabled(self) -> bool:
        return bool(self._settings.urls)

    def notify(
        self,
        event: str,
        room: models.Room,
        participant: models.ParticipantInfo | None = None,
        track: models.TrackInfo | None = None,
    ) -> None:
        """Queue `event` of `room` for every URL (the messages are copied: the caller may change them)."""
        if not self.enabled:
            return
        message = webhook.WebhookEvent(event=event, room=room, id=event_id(), created_at=int(time.time()))
        if participant is not None:
            message.participant.CopyFrom(participant)
        if track is not None:
            message.track.CopyFrom(track)
        for url in self._settings.urls:
            queue = self._queues.setdefault((url, room.name), _Queue())
            if len(queue.events) >= MAX_QUEUED:
                self._drop(url, message, f"{MAX_QUEUED} events of the room are waiting")
                continue
            queue.events.append(message)
            if queue.task is None:
                queue.task = spawn(self._deliver(url, room.name, queue), f"{self._owner}: webhooks to {url}")

    async def _deliver(self, url: str, room: str, queue: _Queue) -> None:
        try:
            while queue.events:
                message = queue.events[0]
                message.num_dropped = self._dropped.pop(url, 0)
                why = await self._send(url, message)
                queue.events.popleft()
                if why:
                    self._drop(url, message, why)
                else:
                    self.counters["webhooks_sent"] += 1
                    log.debug("%s: webhook %s of %s sent to %s", self._owner, message.event, room, url)
        finally:
            if self._queues.get((url, room)) is queue:
                del self._queues[(url, room)]

    async def _send(self, url: str, message: webhook.WebhookEvent) -> str:
        """POST the event, retrying what may pass later; '' when the receiver took it, else why not."""
        body = json_format.MessageToJson(message, indent=None).encode()
        delay = BACKOFF_FIRST
        why = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                self.counters["webhook_retries"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
            headers = {
                "Authorization": sign(body, self._settings.api_key, self._settings.api_secret),
                "Content-Type": CONTENT_TYPE,
                "User-Agent": "raysfu",
            }
            try:
                async with self._client().post(url, data=body, headers=headers) as reply:
                    if reply.status < 300:
                        return ""
                    why = f"HTTP {reply.status}"
                    if not _may_pass_later(reply.status):
                        return why
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            _ratelog.warning(
                "attempt", "%s: webhook %s to %s failed (%s), retrying", self._owner, message.event, url, why
            )
        return f"{why} after {ATTEMPTS} attempts"

    def _drop(self, url: str, message: webhook.WebhookEvent, why: str) -> None:
        self._dropped[url] += 1
        self.counters["webhooks_dropped"] += 1
        log.warning(
            "%s: webhook %s of room %s not delivered to %s: %s",
            self._owner,
            message.event,
            message.room.name,
            url,
            why,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT))
        return self._session
