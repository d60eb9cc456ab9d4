"""From optimized images to a gallery: rank, drop dead filters, lay out the picture (pictures
themselves are made by `jaxviz.render`), and the records of filters.json."""

from __future__ import annotations

import json

import numpy as np

from jaxviz import render as pictures
from jaxviz.errors import JaxvizError

MAX_MARGIN = 64  # pixels between tiles; more only makes a picture of black space


def is_dead(activations: np.ndarray) -> np.ndarray:
  """Elementwise over final activations of any shape: ≤ 0, NaN or infinite."""
  activations = np.asarray(activations)
  return ~((activations > 0) & np.isfinite(activations))


def rank(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Ranks filters by final activation, best first; filters with activation ≤ 0 are dead.

  Args:
    activations: `[N]` final activation per filter.
  Returns:
    `(ranks, dead)`: `ranks` `[N]` int, 0 for the best live filter and -1 for dead ones;
    `dead` `[N]` bool.
  """
  activations = np.asarray(activations)
  dead = is_dead(activations)
  order = [i for i in np.argsort(-activations, kind="stable") if not dead[i]]
  ranks = np.full(len(activations), -1, np.int64)
  ranks[order] = np.arange(len(order))
  return ranks, dead


def filter_records(filters: np.ndarray, activations: np.ndarray,
                   robustness: np.ndarray | None = None, preset: str = "",
                   woken: np.ndarray | None = None) -> list[dict]:
  """filters.json: one record per filter, in request order:

  `filter`; `activation`, the true objective of the final, untransformed image; `robustness`,
  its mean activation under held-out random transforms over `activation` (null for dead
  filters or when not measured); `dead` (activation ≤ 0 or not finite); `rank` by activation
  among the live ones (null when dead); `woken`, whether the image comes from the second pass
  for dead filters (`jaxviz.wake`: pixels, no transforms); and `preset`, the preset the
  settings come from.
  """
  ranks, dead = rank(activations)
  if robustness is None:
    robustness = np.full(len(filters), np.nan)
  if woken is None:
    woken = np.zeros(len(filters), bool)
  return [{"filter": int(f), "activation": _finite(a), "robustness": None if d else _finite(q),
           "dead": bool(d), "rank": None if d else int(r), "woken": bool(w), "preset": preset}
          for f, a, q, d, r, w in zip(filters, activations, robustness, dead, ranks, woken)]


def _finite(value) -> float | None:
  """A JSON-safe number: None for NaN and infinities."""
  value = float(value)
  return value if np.isfinite(value) else None


def stats(records: list[dict]) -> dict:
  """`{"live", "woken", "count", "median_activation", "median_robustness"}` of filters.json
  records: `woken` counts the live filters the second pass woke (`jaxviz.wake`); the medians
  are over all live filters (None when there are none, or no robustness was measured)."""
  live = [r for r in records if not r["dead"]]
  robust = [r["robustness"] for r in live if r["robustness"] is not None]
  return {"live": len(live), "woken": sum(bool(r.get("woken")) for r in live),
          "count": len(records),
          "median_activation": float(np.median([r["activation"] for r in live])) if live else None,
          "median_robustness": float(np.median(robust)) if robust else None}


def summary_line(records: list[dict]) -> str:
  """`"48/50 live, median robustness 0.93"` for a layer's records; `"… live (3 woken without
  transforms), …"` when the second pass for dead filters woke some."""
  numbers = stats(records)
  text = f"{numbers['live']}/{numbers['count']} live"
  if numbers["woken"]:
    text += f" ({numbers['woken']} woken without transforms)"
  robustness = numbers["median_robustness"]
  return text + (f", median robustness {robustness:.2f}" if robustness is not None else "")


def check_layout(max_tiles: int, margin: int) -> None:
  """Refuses a tile cap or margin no picture can use, before anything is computed."""
  if isinstance(max_tiles, bool) or max_tiles < 0:
    raise JaxvizError(f"max_tiles must be ≥ 0 (0 = every live filter), got {max_tiles}")
  if isinstance(margin, bool) or not 0 <= margin <= MAX_MARGIN:
    raise JaxvizError(f"margin must be 0–{MAX_MARGIN} pixels, got {margin}")


def picture(display: np.ndarray, records: list[dict], *, max_tiles: int = 0, margin: int = 5,
           labels: bool = False, normalize: bool = True) -> np.ndarray:
  """The gallery picture: live filters in rank order, at most `max_tiles` (0 = all).

  Args:
    display: `[N, H, W, C]` display values per filter, in the order of `records`; or
      `[N, D, H, W, C]` with D images per filter, drawn as one row per filter.
    normalize: each tile as the seeds show it (`render.deprocess`); False: its true pixels, for
      display values on the 0–255 scale (bounded parameterizations).
  """
  display = np.asarray(display)
  per_filter = display[:, None] if display.ndim == 4 else display
  d = per_filter.shape[1]
  live = sorted((r["rank"], i) for i, r in enumerate(records) if not r["dead"])
  if max_tiles > 0:
    live = live[:max_tiles]
  if not live:
    return np.zeros(per_filter.shape[2:], np.uint8)
  show = pictures.deprocess if normalize else pictures.pixels_uint8
  tiles = np.stack([show(image) for _, i in live for image in per_filter[i]])
  names = ([str(records[i]["filter"]) if j == 0 else "" for _, i in live for j in range(d)]
           if labels else None)
  return pictures.stitch(tiles, margin, names, columns=d if d > 1 else None)


def records_json(records: list[dict]) -> bytes:
  return (json.dumps(records, indent=1) + "\n").encode()
