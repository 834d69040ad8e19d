"""Logging set-up for the actor processes (Ray forwards their output to the driver's)."""

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# LiveKit's `logging.level` values, as Python's logging levels.
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info") -> None:
    """The root logger at `level` (a LOG_LEVELS key), with raysfu's format."""
    logging.basicConfig(format=FORMAT)
    logging.getLogger().setLevel(LOG_LEVELS[level])
