"""From optimized images to a gallery: deprocess, rank, drop dead filters, stitch, save."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from jaxviz.errors import JaxvizError

MAX_MARGIN = 64  # pixels between tiles; more only makes a picture of black space


def deprocess(x: np.ndarray) -> np.ndarray:
  """The seeds' deprocessing of one image `[H, W, C]` (display values, any scale) → uint8.

  Centers on 0, scales to std 0.1, shifts to 0.5, clips to [0, 1], and maps to 0–255.
  """
  x = np.asarray(x, np.float64)
  x = (x - x.mean()) / (x.std() + 1e-5) * 0.1 + 0.5
  return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def rank(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Ranks filters by final activation, best first; filters with activation ≤ 0 are dead.

  Args:
    activations: `[N]` final activation per filter.
  Returns:
    `(ranks, dead)`: `ranks` `[N]` int, 0 for the best live filter and -1 for dead ones;
    `dead` `[N]` bool.
  """
  activations = np.asarray(activations)
  dead = ~((activations > 0) & np.isfinite(activations))  # NaN and inf count as dead too
  order = [i for i in np.argsort(-activations, kind="stable") if not dead[i]]
  ranks = np.full(len(activations), -1, np.int64)
  ranks[order] = np.arange(len(order))
  return ranks, dead


def grid_shape(count: int) -> tuple[int, int]:
  """`(rows, cols)` of the smallest n×n grid holding `count` tiles, minus empty rows."""
  n = max(1, math.ceil(math.sqrt(count)))
  return max(1, math.ceil(count / n)), n


def stitch(tiles: np.ndarray, margin: int = 5, labels: Sequence[str] | None = None,
           columns: int | None = None) -> np.ndarray:
  """Lays `tiles` `[N, h, w, C]` uint8 row by row on a black grid with `margin` pixels between.

  Returns `[rows·h + (rows-1)·margin, cols·w + (cols-1)·margin, C]` uint8: on the smallest
  n×n grid (`grid_shape`), or `columns` wide. With `labels`, each tile gets its label written
  in its top-left corner.
  """
  n, h, w, c = tiles.shape
  rows, cols = grid_shape(n) if columns is None else (-(-n // columns), columns)
  out = np.zeros((rows * h + (rows - 1) * margin, cols * w + (cols - 1) * margin, c), np.uint8)
  for i, tile in enumerate(tiles):
    r, col = divmod(i, cols)
    out[r * (h + margin):r * (h + margin) + h, col * (w + margin):col * (w + margin) + w] = tile
  if labels is not None:
    out = _draw_labels(out, labels, h, w, margin, cols)
  return out


def _draw_labels(grid: np.ndarray, labels: Sequence[str], h: int, w: int, margin: int,
                 cols: int) -> np.ndarray:
  image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  draw = ImageDraw.Draw(image)
  for i, label in enumerate(labels):
    r, col = divmod(i, cols)
    xy = (col * (w + margin) + 1, r * (h + margin))
    draw.text(xy, str(label), fill=255 if image.mode == "L" else (255, 255, 0))
  out = np.asarray(image)
  return out[..., None] if out.ndim == 2 else out


def png_bytes(grid: np.ndarray) -> bytes:
  """Encodes `[H, W, 1 or 3]` uint8 as PNG."""
  image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def filter_records(filters: np.ndarray, activations: np.ndarray,
                   robustness: np.ndarray | None = None, preset: str = "") -> list[dict]:
  """filters.json: one record per filter, in request order:

  `filter`; `activation`, the true objective of the final, untransformed image; `robustness`,
  its mean activation under held-out random transforms over `activation` (null for dead
  filters or when not measured); `dead` (activation ≤ 0 or not finite); `rank` by activation
  among the live ones (null when dead); and `preset`, the preset the settings come from.
  """
  ranks, dead = rank(activations)
  if robustness is None:
    robustness = np.full(len(filters), np.nan)
  return [{"filter": int(f), "activation": _finite(a), "robustness": None if d else _finite(q),
           "dead": bool(d), "rank": None if d else int(r), "preset": preset}
          for f, a, q, d, r in zip(filters, activations, robustness, dead, ranks)]


def _finite(value) -> float | None:
  """A JSON-safe number: None for NaN and infinities."""
  value = float(value)
  return value if np.isfinite(value) else None


def summary_line(records: list[dict]) -> str:
  """`"48/50 live, median robustness 0.93"` for a layer's records."""
  live = [r for r in records if not r["dead"]]
  robust = [r["robustness"] for r in live if r["robustness"] is not None]
  text = f"{len(live)}/{len(records)} live"
  return text + (f", median robustness {np.median(robust):.2f}" if robust else "")


def check_layout(max_tiles: int, margin: int) -> None:
  """Refuses a tile cap or margin no picture can use, before anything is computed."""
  if isinstance(max_tiles, bool) or max_tiles < 0:
    raise JaxvizError(f"max_tiles must be ≥ 0 (0 = every live filter), got {max_tiles}")
  if isinstance(margin, bool) or not 0 <= margin <= MAX_MARGIN:
    raise JaxvizError(f"margin must be 0–{MAX_MARGIN} pixels, got {margin}")


def true_pixels(x: np.ndarray) -> np.ndarray:
  """Display values on the 0–255 scale → uint8, clipped: the image as the model sees it."""
  return np.clip(np.asarray(x, np.float64) + 0.5, 0, 255).astype(np.uint8)


def render(display: np.ndarray, records: list[dict], *, max_tiles: int = 0, margin: int = 5,
           labels: bool = False, normalize: bool = True) -> np.ndarray:
  """The gallery picture: live filters in rank order, at most `max_tiles` (0 = all).

  Args:
    display: `[N, H, W, C]` display values per filter, in the order of `records`; or
      `[N, D, H, W, C]` with D images per filter, drawn as one row per filter.
    normalize: each tile as the seeds show it (`deprocess`); False: its true pixels, for
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
  show = deprocess if normalize else true_pixels
  tiles = np.stack([show(image) for _, i in live for image in per_filter[i]])
  names = ([str(records[i]["filter"]) if j == 0 else "" for _, i in live for j in range(d)]
           if labels else None)
  return stitch(tiles, margin, names, columns=d if d > 1 else None)


def records_json(records: list[dict]) -> bytes:
  return (json.dumps(records, indent=1) + "\n").encode()
