"""Every picture jaxviz writes is made here: values → uint8 tiles (the seeds' display, true
pixels, a jet colormap and overlays), tiles → labelled grids, grids → PNG bytes.

Everything here is numpy (and Pillow) on the host; tiles are uint8 `[h, w, C]` (C = 1 or 3).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from jaxviz.models.spec import ModelSpec

TILE_SIDE = 56   # small maps are enlarged (nearest neighbour) to at least this many pixels


def jet(t: np.ndarray) -> np.ndarray:
  """Jet-like colormap: values `[...]` in [0, 1] → RGB `[..., 3]` float in [0, 1]
  (dark blue, blue, cyan, yellow, red, dark red)."""
  t = np.clip(np.asarray(t, np.float64), 0.0, 1.0)[..., None]
  centers = np.array([3.0, 2.0, 1.0])  # red, green, blue peak at t = 3/4, 1/2, 1/4
  return np.clip(1.5 - np.abs(4.0 * t - centers), 0.0, 1.0)


def overlay(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """Blends the jet colours of `heat` `[H, W]` in [0, 1] over `pixels` `[H, W, 1 or 3]`
  in [0, 255]; returns `[H, W, 3]` uint8."""
  rgb = to_rgb(pixels)
  out = (1.0 - alpha) * rgb + alpha * 255.0 * jet(heat)
  return np.clip(out, 0, 255).astype(np.uint8)


def to_rgb(pixels: np.ndarray) -> np.ndarray:
  """`[H, W, 1 or 3]` → `[H, W, 3]` float64, grey repeated."""
  pixels = np.asarray(pixels, np.float64)
  return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def deprocess(x: np.ndarray) -> np.ndarray:
  """The seeds' deprocessing of one image `[H, W, C]` (display values, any scale) → uint8.

  Centers on 0, scales to std 0.1, shifts to 0.5, clips to [0, 1], and maps to 0–255
  (rounding down, as the seeds do).
  """
  return (standardize(x, 0.1, eps=1e-5) * 255).astype(np.uint8)


def optimized_tiles(spec: ModelSpec, images: np.ndarray, bounded: bool) -> np.ndarray:
  """Optimized images `[N, H, W, C]` (model input space) → `[N, H, W, C]` uint8 as every
  jaxviz picture shows them: their true pixels when the parameterization keeps them in range
  (`bounded`), else the seeds' normalized display (`deprocess`)."""
  show = pixels_uint8 if bounded else deprocess
  return np.stack([show(x) for x in spec.to_display(np.asarray(images, np.float32))])


def to_uint8(x: np.ndarray) -> np.ndarray:
  """Values in [0, 1] (clipped) → uint8 0–255."""
  return (np.clip(np.asarray(x, np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def pixels_uint8(pixels: np.ndarray) -> np.ndarray:
  """Pixels in [0, 255] (clipped, rounded) → uint8: an image as the model sees it."""
  return np.clip(np.asarray(pixels, np.float64) + 0.5, 0, 255).astype(np.uint8)


def standardize(x: np.ndarray, std: float = 0.1, eps: float = 1e-8) -> np.ndarray:
  """The seeds' display of one signed map `[H, W, ...]`: mean 0.5, spread `std`, in [0, 1].

  A constant map becomes flat grey 0.5.
  """
  x = np.asarray(x, np.float64)
  return np.clip((x - x.mean()) / (x.std() + eps) * std + 0.5, 0.0, 1.0)


def linear_display(spec: ModelSpec, x: np.ndarray) -> np.ndarray:
  """The linear part of `spec.to_display` applied to `x` `[..., C]` (offsets left out).

  Gradients and weights live in the model's input space but are differences, not images:
  this maps their channels to display order (BGR → RGB for VGG16) without adding a mean.
  """
  x = np.asarray(x, np.float32)
  return np.asarray(spec.to_display(x), np.float32) - np.asarray(
      spec.to_display(np.zeros_like(x)), np.float32)


def enlarge(tile: np.ndarray, side: int = TILE_SIDE) -> np.ndarray:
  """Repeats pixels of `tile` `[h, w, C]` by the smallest whole factor reaching `side`."""
  factor = max(1, math.ceil(side / max(tile.shape[0], tile.shape[1])))
  return np.repeat(np.repeat(tile, factor, axis=0), factor, axis=1)


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
  n = len(tiles)
  rows_, cols = grid_shape(n) if columns is None else (-(-n // columns), columns)
  cut = [list(tiles[r * cols:(r + 1) * cols]) for r in range(rows_)]
  names = None if labels is None else [list(labels[r * cols:(r + 1) * cols])
                                       for r in range(rows_)]
  return rows(cut, margin, names, columns=cols)


def rows(tiles: Sequence[Sequence[np.ndarray]], margin: int = 4,
         labels: Sequence[Sequence[str]] | None = None,
         columns: int | None = None) -> np.ndarray:
  """Lays out rows of equal-sized uint8 tiles `[h, w, C]` on black, `margin` pixels apart;
  rows may be of different lengths (the grid is `columns` wide, default the longest row).
  With `labels` (same nesting), each tile gets its label in its top-left corner."""
  h, w, c = tiles[0][0].shape
  cols = columns or max(len(r) for r in tiles)
  out = np.zeros((len(tiles) * (h + margin) - margin, cols * (w + margin) - margin, c), np.uint8)
  for i, row in enumerate(tiles):
    for j, tile in enumerate(row):
      out[i * (h + margin):i * (h + margin) + h, j * (w + margin):j * (w + margin) + w] = tile
  if labels is not None:
    spots = [((j * (w + margin) + 2, i * (h + margin) + 1), text)
             for i, row in enumerate(labels) for j, text in enumerate(row)]
    out = draw_text(out, spots)
  return out


def draw_text(picture: np.ndarray, spots: Sequence[tuple[tuple[int, int], str]]) -> np.ndarray:
  """Writes each `((x, y), text)` on `picture` `[H, W, C]` uint8 with a dark backing."""
  image = Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)
  draw = ImageDraw.Draw(image)
  for (x, y), text in spots:
    if not text:
      continue
    box = draw.textbbox((x, y), text)
    draw.rectangle(box, fill=0)
    draw.text((x, y), text, fill=255 if image.mode == "L" else (255, 255, 0))
  out = np.asarray(image)
  return out[..., None] if out.ndim == 2 else out


def with_headers(grid: np.ndarray, labels: Sequence[str], headers: Sequence[str], h: int, w: int,
           margin: int) -> np.ndarray:
  """`grid` `[H, W, C]` uint8 of `h`×`w` tiles `margin` apart, with a column of row labels on
  its left and a row of column headers on top."""
  mode = "L" if grid.shape[-1] == 1 else "RGB"
  probe = ImageDraw.Draw(Image.new(mode, (1, 1)))
  box = lambda text: probe.textbbox((0, 0), text)
  left = max(box(t)[2] for t in labels) + 2 * margin
  top = max(box(t)[3] for t in headers) + margin
  image = Image.new(mode, (left + grid.shape[1], top + grid.shape[0]))
  image.paste(Image.fromarray(grid[..., 0] if mode == "L" else grid), (left, top))
  draw = ImageDraw.Draw(image)
  white = 255 if mode == "L" else (255, 255, 255)
  for i, text in enumerate(labels):
    y = top + i * (h + margin) + (h - box(text)[3]) // 2
    draw.text((margin, y), text, fill=white)
  for j, text in enumerate(headers):
    draw.text((left + j * (w + margin) + (w - box(text)[2]) // 2, 0), text, fill=white)
  out = np.asarray(image)
  return out[..., None] if out.ndim == 2 else out


def png_bytes(picture: np.ndarray) -> bytes:
  """Encodes `[H, W, 1 or 3]` uint8 as PNG."""
  image = Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()
