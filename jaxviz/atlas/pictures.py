"""The atlas's pictures, each a small PNG: filter tiles, activation curves (matplotlib, Agg)
and first-layer weights. (Dataset examples are drawn by `jaxviz.views.examples.overlays`.)"""

from __future__ import annotations

import numpy as np
from PIL import Image

from jaxviz import render

THUMB_SIDE = 96    # tiles larger than this are shrunk for the layer pages; details keep all
WEIGHT_SIDE = 100  # first-layer weights are enlarged (nearest neighbour) to this many pixels


def thumbnail(tile: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
  """`tile` `[H, W, C]` uint8 shrunk to at most `side` pixels (unchanged when it fits)."""
  h, w, c = tile.shape
  if max(h, w) <= side:
    return tile
  scale = side / max(h, w)
  image = Image.fromarray(tile[..., 0] if c == 1 else tile)
  small = np.asarray(image.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                  Image.Resampling.LANCZOS))
  return small[..., None] if small.ndim == 2 else small


def weight_tiles(tiles_uint8: np.ndarray, side: int = WEIGHT_SIDE) -> list[np.ndarray]:
  """First-layer filter tiles `[N, kh, kw, C]` uint8 (`weights.filter_tiles`), enlarged."""
  return [render.enlarge(t, side) for t in tiles_uint8]


class CurvePlotter:
  """Draws activation-over-steps curves as small PNGs, reusing one matplotlib figure (Agg)."""

  def __init__(self, width: float = 3.6, height: float = 1.9, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    self.figure = Figure(figsize=(width, height), dpi=dpi)
    self.canvas = FigureCanvasAgg(self.figure)
    self.axes = self.figure.add_subplot()
    (self.line,) = self.axes.plot([], [], color="#d9480f", linewidth=1.6)
    self.axes.set_xlabel("step", fontsize=8)
    self.axes.set_ylabel("activation", fontsize=8)
    self.axes.tick_params(labelsize=7)
    self.axes.xaxis.set_major_locator(MaxNLocator(6, integer=True))
    self.axes.yaxis.set_major_locator(MaxNLocator(4))
    self.axes.axhline(0, color="#888", linewidth=0.6)
    self.axes.grid(alpha=0.3)
    self.figure.subplots_adjust(left=0.2, right=0.96, top=0.94, bottom=0.24)

  def __call__(self, activations: np.ndarray) -> bytes:
    """`activations` `[steps + 1]` (the objective before each step, then of the final image)
    → PNG bytes. Non-finite values are left out of the curve."""
    y = np.asarray(activations, np.float64)
    self.line.set_data(np.arange(len(y)), np.where(np.isfinite(y), y, np.nan))
    finite = y[np.isfinite(y)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    low, high = min(low, 0.0), max(high, 0.0)
    pad = 0.05 * (high - low or 1.0)
    self.axes.set_xlim(0, max(1, len(y) - 1))
    self.axes.set_ylim(low - pad, high + pad)
    self.canvas.draw()
    return render.png_bytes(np.asarray(self.canvas.buffer_rgba())[..., :3])
