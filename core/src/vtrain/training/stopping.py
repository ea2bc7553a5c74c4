"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM (schedulers, ``docker stop``).

The first signal only sets a flag: the loop finishes (or, mid-accumulation, abandons) the current
update, writes a checkpoint when one is due or cheap, and ends with :class:`RunStopped`, whose
message names the step reached, the last checkpoint and the command that resumes. A second signal
stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from vtrain.errors import VtrainError

SIGNALS = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}  # 128 + the signal number, as shells report it
# A checkpoint this small (trainable weights; the optimizer state adds about twice that) is written on
# a stop even when checkpoint_step_interval is 0: a LoRA takes a moment, a full model may take minutes.
CHEAP_CHECKPOINT_BYTES = 512 * 2**20


class RunStopped(VtrainError):
    """The run stopped on a signal after saving what it could; the message says where and how to resume."""

    label = "stopped"

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name
        self.exit_code = EXIT_CODES.get(signal_name, 1)


class StopSignals:
    """Installs SIGINT/SIGTERM handlers for the duration of the loop (main thread only).

    ``where()`` returns the lines printed when a second signal stops the run at once.
    """

    def __init__(self, where: Callable[[], str]) -> None:
        self.where = where
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def restore(self) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        name = SIGNALS[number]
        if self.requested is None:
            self.requested = name
            print(f"\nvtrain: {name} received: finishing the current update, then saving and stopping "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)
            return
        self.restore()
        print(f"\nvtrain: second {name}: stopping at once, without saving\n{self.where()}", file=sys.stderr,
              flush=True)
        raise KeyboardInterrupt(name)


def resume_command(argv: list[str]) -> str:
    """The ``vtrain run`` command line of ``argv`` with ``--resume_from_checkpoint latest`` in place of any
    resume setting it had."""
    import shlex

    kept: list[str] = []
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0].lstrip("-").replace("-", "_")
        if token.startswith("--") and name == "resume_from_checkpoint":
            skip = "=" not in token
            continue
        kept.append(token)
    return shlex.join(["vtrain", "run", *kept, "--resume_from_checkpoint", "latest"])
