"""Time-left estimates for long jobs, from the rate at which work got done so far.

Work is counted in any unit roughly proportional to time (the gallery counts chunks).

    clock = WorkClock()
    clock.record(work=1, seconds=2.0)         # a finished chunk
    clock.left(3)                             # ≈ 6.0 s for three more
    format_seconds(75)                        # "1 min 15 s"
"""

from __future__ import annotations

import datetime


class WorkClock:
  """Accumulates finished work and its wall time; estimates the time other work will take."""

  def __init__(self):
    self.work = 0.0
    self.seconds = 0.0

  def record(self, work: float, seconds: float) -> None:
    self.work += float(work)
    self.seconds += float(seconds)

  def left(self, work: float) -> float | None:
    """Seconds `work` more takes at the rate so far; None before any work is recorded."""
    if self.work <= 0 or self.seconds <= 0:
      return None
    return float(work) * self.seconds / self.work

  def describe(self, work: float) -> str:
    """`"about 12 s left, ETA 14:03:07"`, or "" when there is no rate yet."""
    seconds = self.left(work)
    if seconds is None:
      return ""
    end = datetime.datetime.now() + datetime.timedelta(seconds=seconds)
    return f"about {format_seconds(seconds)} left, ETA {end:%H:%M:%S}"


def format_seconds(seconds: float) -> str:
  """`4.2` → "4 s", `75` → "1 min 15 s", `3725` → "1 h 2 min"."""
  seconds = max(0, round(seconds))
  if seconds < 60:
    return f"{seconds} s"
  minutes, seconds = divmod(seconds, 60)
  if minutes < 60:
    return f"{minutes} min {seconds} s"
  hours, minutes = divmod(minutes, 60)
  return f"{hours} h {minutes} min"
