"""Settings the actors receive from the server configuration (plain, picklable dataclasses)."""

from dataclasses import dataclass, field

from actors import limits


@dataclass(frozen=True)
class RoomSettings:
    """Per-room behaviour; server-wide defaults, overridable per room by CreateRoom."""

    empty_timeout: int = 300  # seconds a room nobody ever joined stays open
    departure_timeout: int = 20  # seconds a room stays open after its last participant left
    max_participants: int = 0  # 0 = unlimited


@dataclass(frozen=True)
class WebhookSettings:
    """LiveKit's `webhook`: where room events are posted, signed with the key `api_key` (whose secret the
    configuration fills in once the keys are known)."""

    urls: tuple[str, ...] = ()
    api_key: str = ""
    api_secret: str = field(default="", repr=False)


@dataclass(frozen=True)
class ParticipantLimits:
    """What one participant may send and hold: the `limit` section of the configuration.

    Names and defaults are LiveKit's where LiveKit has the setting (subscription_limit_*: 0 = none).
    LiveKit has no rate limits: those defaults are far above what an SDK sends (a join is ~20 messages, a
    chat a few packets a second) and stop only a flood. Rates are per second, sustained; a burst of
    RATE_BURST seconds' worth passes. 0 turns a limit off.
    """

    signal_messages_per_second: float = 100.0  # over it: the session is ended (LeaveRequest)
    data_packets_per_second: float = 1000.0  # over either: the packets are dropped
    data_bytes_per_second: float = 4 * 1024 * 1024
    max_data_packet_size: int = limits.MAX_DATA_PACKET  # larger packets are dropped
    max_published_tracks: int = 64  # announced and published; over it: AddTrackRequest refused
    subscription_limit_video: int = 0  # over it, as in LiveKit: the subscription waits for a free slot
    subscription_limit_audio: int = 0


@dataclass(frozen=True)
class MediaSettings:
    """What the media workers need to host peer connections."""

    # Addresses ICE gathers host candidates on; empty means every non-loopback interface (aioice's default).
    ice_addresses: tuple[str, ...] = ()
    # The UDP ports (first, last) those host candidates take; None: any port the system gives.
    ice_port_range: tuple[int, int] | None = None
    participants_per_worker: int = 100
    workers_per_node: int = 0  # 0 = one per CPU
    stun_servers: tuple[str, ...] = field(default=())
    # CRC32 digests of the first N RTP payloads per track and per subscription, in media_stats: for tests
    # that check the bytes pass through unchanged; 0 (the default) keeps them off the hot path.
    payload_digests: int = 0
    # A media worker whose process uses this much CPU (in cores, measured every second), or forwards this
    # many RTP packets/s (in and out), takes no new participant; when every worker does, joins are refused.
    # 0: no limit. One worker forwards 30-40k packets/s in a core on the reference machine (bench/).
    max_worker_cpu: float = 0.9
    max_worker_packets: float = 30_000
    # Per-room gauges in Ray's metrics (actors.metrics.RoomGauges), off by default: a Ray worker keeps every
    # tag value it ever recorded for its life (measured: ~14 KB per room per worker), so rooms that come and
    # go grow every worker without bound. For deployments with a fixed set of rooms.
    room_gauges: bool = False
    log_level: str = "info"  # a key of actors.logs.LOG_LEVELS (LiveKit's `logging.level`)
    log_json: bool = False  # JSON lines (LiveKit's `logging.json`; actors.logs)
    limits: ParticipantLimits = field(default_factory=ParticipantLimits)
