"""Filter weights as pictures, as the seed plots them: the kernel of a conv layer normalized to
0–1 over the whole layer, first-layer filters as colour (or grey) tiles, and for any layer each
chosen filter's input channels as a grid of grey tiles.

    view = filter_weights(model, "conv2d_1")
    tiles = filter_tiles(model.spec, view)       # [N, kh, kw, 1 or 3] uint8
    picture = channel_grids(view)                # one block of channel tiles per filter
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jaxviz import render
from jaxviz.errors import JaxvizError
from jaxviz.models import layers as L
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.ranges import parse_indices


class WeightsView(NamedTuple):
  """The weights of chosen filters of one conv layer.

  filters: `[N]` filter indices, in request order.
  kernel: `[kh, kw, C_in, N]` float32, the raw weights of those filters (HWIO).
  low, high: the smallest and largest weight of the whole layer (all its filters), which
    map to 0 and 1 in every picture, as in the seed.
  """
  layer: str
  filters: np.ndarray
  kernel: np.ndarray
  low: float
  high: float

  def normalized(self) -> np.ndarray:
    """`[N, kh, kw, C_in]` weights mapped to [0, 1] by the layer's min and max."""
    scaled = (self.kernel - self.low) / max(self.high - self.low, 1e-12)
    return np.transpose(scaled, (3, 0, 1, 2))


def first_conv(spec: ModelSpec) -> str:
  """The model's first conv layer: the one whose filters look at pixels."""
  if not spec.conv_layer_names:
    raise JaxvizError(f"model {spec.name!r} has no conv layers")
  return spec.conv_layer_names[0]


def check_request(spec: ModelSpec, layer: str | None,
                  filters: str | Sequence[int]) -> tuple[str, list[int]]:
  """`(layer, filter indices)` for conv `layer` (None: the first conv); clear errors otherwise."""
  layer = layer or first_conv(spec)
  target = spec.layer(layer)
  if not isinstance(target, L.Conv):
    raise JaxvizError(f"layer {layer!r} is not a conv layer; weights are shown for conv "
                      f"layers: {', '.join(spec.conv_layer_names)}")
  return layer, parse_indices(filters, target.features)


def filter_weights(model: Model, layer: str | None = None,
                   filters: str | Sequence[int] = "all") -> WeightsView:
  """The kernel of conv `layer` (None: the first conv) for `filters` ("all", "0,3,8-11")."""
  layer, indices = check_request(model.spec, layer, filters)
  kernel = np.asarray(model.params[layer]["kernel"], np.float32)
  return WeightsView(layer, np.asarray(indices), kernel[..., indices],
                     float(kernel.min()), float(kernel.max()))


def filter_tiles(spec: ModelSpec, view: WeightsView) -> np.ndarray:
  """Each filter as one tile `[N, kh, kw, C]` uint8: colour in display order (RGB) for three
  input channels, grey for one. Other layers have no image-like filters: use `channel_grids`."""
  channels = view.kernel.shape[2]
  if channels not in (1, 3) or channels != spec.input_shape[-1]:
    raise JaxvizError(f"layer {view.layer!r} takes {channels} channels, not the image's "
                      f"{spec.input_shape[-1]}: its filters are shown per channel only")
  # The channels in display order (VGG16's BGR weights → RGB); the layer's range still maps
  # to 0–1: the display's scale (LeNet's inputs in [0, 1] show as 0–255) is divided out.
  scale = np.abs(render.linear_display(spec, np.ones((1, channels), np.float32))).max()
  return render.to_uint8(render.linear_display(spec, view.normalized()) / scale)


def filters_picture(spec: ModelSpec, view: WeightsView, margin: int = 2,
                    labels: bool = False) -> np.ndarray:
  """All chosen filters of an image-facing layer as enlarged tiles on an n×n grid."""
  tiles = np.stack([render.enlarge(t, 40) for t in filter_tiles(spec, view)])
  names = [str(f) for f in view.filters] if labels else None
  return render.stitch(tiles, margin, names)


def channel_grids(view: WeightsView, margin: int = 1, block_margin: int = 6,
                  labels: bool = False) -> np.ndarray:
  """Every chosen filter as a block: its input channels as grey tiles on an n×n grid; the
  blocks themselves on an n×n grid with `block_margin` between them. Returns `[H, W, 1]` uint8."""
  blocks = []
  for weights in view.normalized():  # [kh, kw, C_in]
    tiles = np.stack([render.enlarge(render.to_uint8(weights[..., c:c + 1]), 12)
                      for c in range(weights.shape[-1])])
    blocks.append(render.stitch(tiles, margin))
  names = [str(f) for f in view.filters] if labels else None
  return render.stitch(np.stack(blocks), block_margin, names)

