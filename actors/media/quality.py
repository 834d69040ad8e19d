"""Connection quality of a track, scored per window from its packet loss, on LiveKit's scale.

LiveKit (livekit-server pkg/sfu/connectionquality/scorer.go, connectionstats.go): every UPDATE_INTERVAL a
track's window is scored 100 - loss% x weight (the weight by codec: video 10, Opus 8, Opus with in-band FEC
8 / 1.5, RED 4); the score moves towards that by 0.8 when it falls and by 0.4 when it rises, and not below
30 while packets arrive; a window without packets scores 40 (POOR), 20 (LOST) when RTCP stopped too. A
published track's loss is what its receiver missed of the RTP it got, net of retransmissions; a
subscription's is what its subscriber's receiver reports say, less the packets the forwarder never had to
send (lost upstream). A muted track scores 100. LiveKit's server adds delay (RTT, jitter) terms only when
configured to, and by default it is not, so they are not part of the score here either.
A participant's quality is the worst of its tracks' (EXCELLENT with none); clients are sent the score as
a MOS (1..4.5).
"""

from collections.abc import Mapping

from livekit.protocol import models

UPDATE_INTERVAL = 5.0  # seconds between two windows, and between two ConnectionQualityUpdates

MAX_SCORE = 100.0
MIN_SCORE = 30.0
INCREASE_FACTOR = 0.4
DECREASE_FACTOR = 0.8
EXCELLENT_ABOVE = 80.0
GOOD_ABOVE = 40.0
POOR_ABOVE = 20.0
MAX_MOS = 4.5


def loss_weight(mime_type: str, parameters: Mapping[str, object]) -> float:
    """How much one percent of lost packets costs a track of this codec."""
    mime = mime_type.lower()
    fec = str(parameters.get("useinbandfec", "")) == "1"
    if mime == "audio/opus":
        return 8.0 / 1.5 if fec else 8.0
    if mime == "audio/red":
        return 4.0 / 1.5 if fec else 4.0
    if mime.startswith("video/"):
        return 10.0
    return 0.0


def quality_of(score: float) -> int:
    """models.ConnectionQuality of a score."""
    if score > EXCELLENT_ABOVE:
        return models.ConnectionQuality.EXCELLENT
    if score > GOOD_ABOVE:
        return models.ConnectionQuality.GOOD
    if score > POOR_ABOVE:
        return models.ConnectionQuality.POOR
    return models.ConnectionQuality.LOST


def mos(score: float) -> float:
    """A score (0..100) as a mean opinion score (1..4.5), LiveKit's mapping."""
    if score <= 0.0:
        return 1.0
    if score >= MAX_SCORE:
        return MAX_MOS
    return 1.0 + 0.035 * score + 0.000007 * score * (score - 60.0) * (100.0 - score)


def rating(score: float | None) -> tuple[int, float]:
    """A participant's (models.ConnectionQuality, MOS) from the lowest score of its tracks (None: it has
    none, EXCELLENT)."""
    if score is None:
        return models.ConnectionQuality.EXCELLENT, MAX_MOS
    return quality_of(score), mos(score)


class Scorer:
    """One track's score, updated once per window from running totals of its packets."""

    __slots__ = ("_totals", "score", "weight")

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.score = MAX_SCORE
        self._totals: tuple[int, int] | None = None

    def update_totals(
        self, expected: int, lost: int, muted: bool = False, expecting: bool = True, rtcp_stale: bool = False
    ) -> None:
        """One window, from the totals so far of packets `expected` (by sequence numbers) and `lost`.
        A window without packets when some were due (`expecting`, and some came before) scores POOR, or LOST
        when the sender's RTCP stopped too (`rtcp_stale`)."""
        previous, self._totals = self._totals, (expected, lost)
        if previous is None:
            return
        if expected == previous[0] and previous[0] > 0 and expecting and not muted:
            self.score = POOR_ABOVE if rtcp_stale else GOOD_ABOVE
            return
        self.update(expected - previous[0], lost - previous[1], muted)

    def update(self, expected: int, lost: int, muted: bool = False) -> None:
        """One window: `expected` packets (by sequence numbers), `lost` of them never arrived."""
        if muted:
            self.score = MAX_SCORE
            return
        if expected <= 0:
            return
        window = max(0.0, MAX_SCORE - max(0, lost) * 100.0 / expected * self.weight)
        factor = DECREASE_FACTOR if window < self.score else INCREASE_FACTOR
        self.score = max(MIN_SCORE, factor * window + (1.0 - factor) * self.score)
