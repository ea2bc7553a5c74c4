"""Notices that should be said once per process (a fallback taken, an option ignored on this device)."""

from __future__ import annotations

import logging


class NoticeOnce:
    """``notice(message)`` logs a warning the first time ``message`` is seen; ``reset()`` forgets."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.seen: set[str] = set()

    def __call__(self, message: str) -> None:
        if message not in self.seen:
            self.seen.add(message)
            self.logger.warning(message)

    def reset(self) -> None:
        self.seen.clear()
