"""Feature maps: what chosen layers output for an input image, all from one forward pass.

    maps = feature_maps(model, batch.inputs)                 # the last conv of each block
    maps = feature_maps(model, x, ["conv2d_1", "conv2d_2"])  # {layer: [N, H', W', C]}
    picture = feature_map_grid(maps["conv2d_2"][0])          # channels as grey tiles

The values are those of `model.features(x, layer)`: a layer's output as Keras reports it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import render
from jaxviz.errors import JaxvizError
from jaxviz.models import layers as L
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.ranges import split_names


def block_layers(spec: ModelSpec) -> list[str]:
  """The last conv layer before each pooling layer (and the last conv, if no pool follows it):
  `conv2d_1, conv2d_2` for LeNet, `block1_conv2 … block5_conv3` for VGG16."""
  found, last = [], None
  for layer in spec.layers:
    if isinstance(layer, L.Conv):
      last = layer.name
    elif isinstance(layer, L.MaxPool) and last is not None:
      found.append(last)
      last = None
  if last is not None:
    found.append(last)
  if not found:
    raise JaxvizError(f"model {spec.name!r} has no conv layers; name the layers to show")
  return found


def resolve_layers(spec: ModelSpec, layers: str | Sequence[str] | None) -> list[str]:
  """`None`/"" → `block_layers`; "a,b" or a list → those names in model order, checked to
  have spatial outputs `[N, H', W', C]`."""
  if layers is None or (isinstance(layers, str) and not layers.strip()):
    return block_layers(spec)
  names = split_names(layers)
  for name in names:
    spec.layer(name)
  order = spec.layer_names
  names = sorted(set(names), key=order.index)
  for name in names:
    shape = spec.output_shape(name)
    if len(shape) != 3:
      raise JaxvizError(f"layer {name!r} outputs {shape}, not maps [H, W, C]; feature "
                        f"maps are shown for conv and pooling layers")
  return names


def feature_maps(model: Model, images: np.ndarray,
                 layers: str | Sequence[str] | None = None) -> dict[str, np.ndarray]:
  """Outputs of `layers` for images `[N, H, W, C]` (preprocessed), from one forward pass.

  Returns `{layer: [N, H', W', C'] float32}` in model order. The pass runs once through the
  network, handing each requested layer's output on to the next segment.
  """
  names = resolve_layers(model.spec, layers)
  outputs = pass_segments(model.spec.module, segments(model.spec, names), model.params,
                          jnp.asarray(images, jnp.float32))
  return {name: np.asarray(out) for name, out in zip(names, outputs)}


def segments(spec: ModelSpec, names: Sequence[str]) -> tuple[tuple[str | None, str], ...]:
  """`(start, upto)` pairs that walk the model once through `names` (in model order): each
  segment starts after the previous requested layer and stops at the next."""
  order = spec.layer_names
  starts = [None] + [order[order.index(n) + 1] for n in names[:-1]]
  return tuple(zip(starts, names))


@functools.partial(jax.jit, static_argnums=(0, 1))
def pass_segments(module, parts, params, x):
  """The outputs of each `(start, upto)` segment of `parts` (`segments`), `x` `[N, H, W, C]`
  flowing through them in turn: one forward pass."""
  outputs = []
  for start, upto in parts:
    x = module.apply({"params": params}, x, start=start, upto=upto)
    outputs.append(x)
  return outputs


def channel_tiles(maps: np.ndarray, max_channels: int = 0) -> np.ndarray:
  """One image's maps `[H', W', C]` → `[C, H', W', 1]` uint8 grey tiles, each channel shown
  as the seed does (centred, scaled by its own spread); at most `max_channels` (0 = all)."""
  count = maps.shape[-1] if max_channels <= 0 else min(max_channels, maps.shape[-1])
  tiles = []
  for c in range(count):
    m = np.asarray(maps[..., c], np.float64)
    tiles.append(render.to_uint8(render.standardize(m, 0.25))[..., None])
  return np.stack(tiles)


def feature_map_grid(maps: np.ndarray, max_channels: int = 0, margin: int = 2,
                     labels: bool = False) -> np.ndarray:
  """One image's maps `[H', W', C]` → `[H, W, 1]` uint8: channels on an n×n grid, enlarged."""
  tiles = channel_tiles(maps, max_channels)
  tiles = np.stack([render.enlarge(t) for t in tiles])
  names = [str(c) for c in range(len(tiles))] if labels else None
  return render.stitch(tiles, margin, names)
