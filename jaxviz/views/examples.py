"""Dataset examples: for every filter of chosen layers, the images of a dataset that excite it
most, with the filter's feature map for each, all from one batched forward pass.

    images, labels = load_dataset("digits", "test")
    top = top_examples(model, lenet.preprocess(images * 255), ["conv2d_1", "conv2d_2"], k=9)
    top["conv2d_2"].indices       # [50, 9] dataset indices, most exciting first
    top["conv2d_2"].maps          # [50, 9, 14, 14] filter f's map over each of its images

A filter's score for an image is the max (or the mean) over positions of its map: the layer's
output as `jaxviz layers` lists it (LeNet's conv layers before their ReLU, VGG16's after it;
ranking by the max is the same either way, as a ReLU keeps the order of positive values).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxviz import render
from jaxviz.errors import JaxvizError, unknown
from jaxviz.models.spec import Model
from jaxviz.views import feature_maps as feature_maps_lib

RANKINGS = ("max", "mean")


class TopExamples(NamedTuple):
  """One layer's most exciting examples, per filter (all the layer's filters, in order).

  indices: `[C, k]` int32 dataset indices, highest score first (ties: lower index first).
  scores: `[C, k]` float32 their scores (max or mean of the filter's map).
  maps: `[C, k, H', W']` float32 the filter's map over each of them.
  """
  indices: np.ndarray
  scores: np.ndarray
  maps: np.ndarray


def check_request(k: int, rank_by: str) -> None:
  if isinstance(k, bool) or not isinstance(k, int) or k < 0:
    raise JaxvizError(f"examples must be a whole number ≥ 0 (0 = none), got {k!r}")
  if rank_by not in RANKINGS:
    raise unknown("example ranking", rank_by, RANKINGS)


def top_examples(model: Model, inputs: np.ndarray, layers: str | Sequence[str],
                 k: int = 9, rank_by: str = "max") -> dict[str, TopExamples]:
  """The `k` examples of `inputs` `[N, H, W, C]` (preprocessed) scoring highest for every filter
  of every layer in `layers` (conv or pooling layers), in one forward pass over all N.

  Returns `{layer: TopExamples}` in model order; `k` is capped at N.
  """
  check_request(k, rank_by)
  names = feature_maps_lib.resolve_layers(model.spec, layers)
  if len(inputs) == 0:
    raise JaxvizError("no examples to rank: the dataset split is empty")
  outputs = _top(model.spec.module, feature_maps_lib.segments(model.spec, names),
                 min(k, len(inputs)), rank_by, model.params, jnp.asarray(inputs, jnp.float32))
  return {name: TopExamples(*(np.asarray(a) for a in out)) for name, out in zip(names, outputs)}


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _top(module, segments, k, rank_by, params, x):
  outputs = []
  for x in feature_maps_lib.pass_segments(module, segments, params, x):   # [N, H', W', C]
    scores = x.max(axis=(1, 2)) if rank_by == "max" else x.mean(axis=(1, 2))  # [N, C]
    values, indices = jax.lax.top_k(scores.T, k)                     # [C, k], stable
    channels = jnp.arange(x.shape[-1])[:, None]
    maps = jnp.moveaxis(x, -1, 1)[indices, channels]                 # [C, k, H', W']
    outputs.append((indices.astype(jnp.int32), values, maps))
  return outputs


def overlays(pixels: np.ndarray, maps: np.ndarray, side: int = 84,
             alpha: float = 0.45) -> np.ndarray:
  """One filter's maps over its examples as heat overlays.

  Args:
    pixels: `[k, H, W, 1 or 3]` the examples' pixels in [0, 255].
    maps: `[k, H', W']` the filter's map over each; shown in jet colours, 0 (or less) dark
      blue and the largest value of all k maps dark red, so the k tiles compare.
    side: tiles are enlarged (nearest neighbour) to at least this many pixels.
  Returns:
    `[k, side', side', 3]` uint8.
  """
  top = max(float(np.max(maps)), 1e-12)
  h, w = pixels.shape[1:3]
  tiles = []
  for image, heat in zip(pixels, maps):
    heat = np.clip(np.asarray(heat, np.float32) / top, 0.0, 1.0)
    heat = np.asarray(Image.fromarray(heat).resize((w, h), Image.Resampling.BILINEAR))
    tiles.append(render.enlarge(render.overlay(image, heat, alpha), side))
  return np.stack(tiles)
