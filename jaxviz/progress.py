"""Progress lines on stderr for anything that takes more than a moment."""

from __future__ import annotations

import sys
import time


class Progress:
  """Prints `[task] message (elapsed)` lines; silent when `enabled` is False."""

  def __init__(self, task: str, enabled: bool = True, stream=None):
    self.task = task
    self.enabled = enabled
    self.stream = stream or sys.stderr
    self.start = time.perf_counter()

  def __call__(self, message: str) -> None:
    if self.enabled:
      elapsed = time.perf_counter() - self.start
      print(f"[{self.task}] {message} ({elapsed:.1f}s)", file=self.stream, flush=True)


SILENT = Progress("", enabled=False)
