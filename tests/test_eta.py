"""Time-left estimates: the rate of finished work, and durations as people read them."""

from jaxviz.eta import WorkClock, format_seconds


def test_a_clock_extrapolates_the_rate_so_far():
  clock = WorkClock()
  assert clock.left(3) is None and clock.describe(3) == ""
  clock.record(1, 2.0)
  clock.record(1, 4.0)
  assert clock.left(3) == 9.0
  assert clock.describe(3).startswith("about 9 s left, ETA ")


def test_durations_read_naturally():
  assert format_seconds(4.4) == "4 s"
  assert format_seconds(75) == "1 min 15 s"
  assert format_seconds(3725) == "1 h 2 min"
