"""Lists as people type them: index ranges `"0,3,10-12"` and name lists `"conv2d_1,conv2d_2"`.

Every filter, class and dataset-example index in jaxviz is read by `parse_indices`, every list
of layer names split by `split_names`.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxviz.errors import JaxvizError


def split_names(value: str | Sequence[str]) -> list[str]:
  """`"a, b,,c"` or `["a", " b"]` → `["a", "b", "c"]`: comma-separated, blanks dropped."""
  parts = value.split(",") if isinstance(value, str) else [str(v) for v in value]
  return [p.strip() for p in parts if p.strip()]


def parse_indices(value: str | int | Sequence[int], count: int, *, name: str = "filters",
                  unit: str = "filter", owner: str = "the layer",
                  example: str = "0,3,10-19") -> list[int]:
  """`"all"` → `[0, …, count-1]`; `"0,3,10-12"`, `7` or `[0, 3]` → those indices, in order.

  Each index and each range's ends are checked against `count` before a range is expanded, so
  `"0-99999999999"` is refused at once. `name`, `unit`, `owner` and `example` word the errors:
  "filter index 60 is out of range: the layer has 50 filters (0–49)".
  """
  def syntax_error():
    return JaxvizError(f"{name} must be 'all' or indices like '{example}'; got {value!r}")

  def check(i: int) -> int:
    if not 0 <= i < count:
      raise JaxvizError(f"{unit} index {i} is out of range: {owner} has {count} {name} "
                        f"(0–{count - 1})")
    return i

  if isinstance(value, bool):
    raise syntax_error()
  if isinstance(value, int):
    return [check(value)]
  if not isinstance(value, str):
    try:
      return _nonempty([check(int(i)) for i in value], name)
    except (TypeError, ValueError):
      raise syntax_error() from None
  if value.strip() == "all":
    return list(range(count))
  indices = []
  for part in filter(None, (p.strip() for p in value.split(","))):
    lo, dash, hi = part.partition("-")
    if not lo.strip().isdigit() or (dash and not hi.strip().isdigit()):
      raise syntax_error()
    lo = check(int(lo))
    if not dash:
      indices.append(lo)
      continue
    hi = check(int(hi))
    if hi < lo:
      raise JaxvizError(f"{name} range {part!r} runs backwards; write it as '{hi}-{lo}'")
    indices.extend(range(lo, hi + 1))
  return _nonempty(indices, name)


def _nonempty(indices: list[int], name: str) -> list[int]:
  if not indices:
    raise JaxvizError(f"no {name} requested")
  return indices
