"""Settings the actors receive from the server configuration (plain, picklable dataclasses)."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoomSettings:
    """Per-room behaviour; server-wide defaults, overridable per room by CreateRoom."""

    empty_timeout: int = 300  # seconds a room nobody ever joined stays open
    departure_timeout: int = 20  # seconds a room stays open after its last participant left
    max_participants: int = 0  # 0 = unlimited


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
    log_level: str = "info"  # a key of actors.logs.LOG_LEVELS (LiveKit's `logging.level`)
