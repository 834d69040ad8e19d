"""Log lines for problems a client or an ordinary race can cause over and over (a bad packet, a garbage frame,
a refused request): at most one per key and interval, so that a bad client cannot flood the logs. The keys are
causes, a small fixed set, never per-session or per-packet values."""

import logging
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, key, message, *args)

    def info(self, key: str, message: str, *args: object) -> None:
        self.log(logging.INFO, key, message, *args)

    def log(self, level: int, key: str, message: str, *args: object) -> None:
        """Log unless `key` was logged less than `interval` seconds ago; the next line says how many were
        left out."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            self._logger.log(level, message + " (%d similar suppressed)", *args, suppressed)
        else:
            self._logger.log(level, message, *args)
