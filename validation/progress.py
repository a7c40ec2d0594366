"""Progress of long work on a terminal: stages and a bar over tasks, silent when not a terminal.

``marginlab run`` shows which stage a study is in (loading data, replaying, testing,
writing the report) and a bar over the backtest's tasks. Output goes to standard
error and only when it is a terminal, so that logs, pipes and CI stay clean.
The executors of :mod:`marginlab.validation.executors` advance the bar as each
task's result comes back.
"""

from __future__ import annotations

import sys
import time
from typing import IO

__all__ = ["Progress"]


class Progress:
    """Stage lines and a task bar on ``stream`` (standard error), shown only when it is a terminal.

    Parameters
    ----------
    stream : text stream, optional
        Where to write (default ``sys.stderr``).
    enabled : bool, optional
        Force on or off; by default on exactly when ``stream`` is a terminal.
    """

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self._t0 = time.perf_counter()
        self._stage_t0 = self._t0
        self._open_bar = False

    def _write(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text)
            self.stream.flush()

    def stage(self, text: str) -> None:
        """Start a stage: one line ``marginlab: text ...`` (closing any bar still drawn)."""
        self._end_bar()
        self._stage_t0 = time.perf_counter()
        self._write(f"marginlab: {text} ...\n")

    def bar(self, done: int, total: int, label: str = "") -> None:
        """Draw (redraw) the bar: ``done`` of ``total`` units, with the elapsed time of the stage."""
        if not self.enabled or total <= 0:
            return
        width = 28
        filled = int(round(width * done / total))
        elapsed = time.perf_counter() - self._stage_t0
        line = f"\r  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label} ({elapsed:,.0f} s)"
        self._write(line[:160].ljust(80))
        self._open_bar = True
        if done >= total:
            self._end_bar()

    def _end_bar(self) -> None:
        if self._open_bar:
            self._write("\n")
            self._open_bar = False

    def done(self, text: str = "done") -> None:
        """Close the bar and say how long the whole work took."""
        self._end_bar()
        self._write(f"marginlab: {text} in {time.perf_counter() - self._t0:,.1f} s\n")
