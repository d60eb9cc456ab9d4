"""A second pass for the filters the main pass leaves dead: in pixels, without transforms.

Some units of a real network (about one in twelve of the edge-tuned VGG16's `block5_conv1`)
stay at zero under the default preset whatever its step size, spectrum or transform ranges
(QUALITY.md): no smooth image that survives random shifts, zooms and rotations makes them
fire. Many still fire for an image made for the pixel grid as it stands. This pass gives every
dead image one more ascent, as many steps as the main pass, with bounded pixels as the
variables (`param.pixel`, a sigmoid onto 0–255), no transforms and Adam at `STEP_SIZE` on the
pixel logits, in two halves:

1. *lift*: the mean of the filter's map **before** its ReLU, which pushes every position up;
2. *follow*: the main objective (after the ReLU, with ReLU rescue), from the lifted image.

Where it ends live, its image, activation history (the first half: the pre-ReLU mean) and
robustness replace the dead one, and `woken` marks it: such an image excites the unit only as
it stands (its robustness is typically near 0), which the gallery's records say rather than
hide. Where it ends dead too, the main pass's result stays.

Filters stay independent: `seed` and the filter index alone decide a dead filter's start and
its draws, so its result never depends on which dead filters share its call. A chunk's dead
filters run together in one call when they fit (`group_size`): every core works, and a device
with two images takes 1.4 times as long as with one, not twice (QUALITY.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from jaxviz import chunking, gallery
from jaxviz.engine import AscentSettings, FilterEngine, FilterResult

STEP_SIZE = 0.05  # Adam on the pixel logits: measured on block5_conv1's dead filters (QUALITY.md)


def wake_settings(settings: AscentSettings, phase: str) -> AscentSettings:
  """The main settings for one half of the pass (`phase` "lift" or "follow", see above): bounded
  pixels for variables, no transforms, no pixel-space regularizers, Adam at `STEP_SIZE`; the
  lift follows the pre-ReLU map. The follow half has the odd step, so together they take
  `settings.steps`."""
  half = settings.steps // 2
  return dataclasses.replace(
      settings, parameterization="pixel", bounded=True, optimizer="adam", step_size=STEP_SIZE,
      schedule="constant", normalize_grad=False, pad=0.0, jitter=0.0, scale=0.0, rotate=0.0,
      crop=1.0, decay=0.0, blur_sigma=0.0, clip_norm_percentile=0.0,
      clip_contribution_percentile=0.0, before_relu=settings.before_relu or phase == "lift",
      steps=half if phase == "lift" else settings.steps - half)


def group_size(count: int, devices: int, limit: int) -> int:
  """Filters per call for `count` dead filters of a chunk of `limit` on `devices` devices: the
  smallest power-of-two multiple of `devices` that holds them all, at most `limit` rounded up to
  a multiple of `devices`. Powers of two keep the number of compiled shapes small."""
  group = devices
  while group < count:
    group *= 2
  return min(group, chunking.round_up(max(limit, 1), devices))


def dead_images(result: FilterResult) -> np.ndarray:
  """`[N]` (or `[N, D]`) bool: images whose final true activation is dead (`gallery.is_dead`)."""
  return gallery.is_dead(result.activations[..., -1])


class Waker:
  """Runs the second pass for one layer: built from the main pass's engine, its two halves
  compiled the first time a dead filter turns up, once for each group size (`group` filters per
  call, or for None `group_size` of the dead filters and the chunk)."""

  def __init__(self, engine: FilterEngine, group: int | None = None):
    self.main = engine
    self.group = group
    self._engines: dict[str, FilterEngine] = {}

  def engine(self, phase: str) -> FilterEngine:
    """The engine of one half ("lift" or "follow")."""
    if phase not in self._engines:
      main = self.main
      self._engines[phase] = FilterEngine(main.model, main.layer,
                                          wake_settings(main.settings, phase),
                                          main.image_shape[0])
    return self._engines[phase]

  def second_pass(self, filters: int | Sequence[int], seed: int, limit: int = 0
                  ) -> FilterResult:
    """The second pass of `filters` (one index or several), each as if on its own: their images,
    the history of both halves `[n, (D,) steps + 1]` and the follow half's robustness. `limit`:
    the most filters one call may take (the main pass's chunk; 0: all of `filters`)."""
    filters = [int(filters)] if np.ndim(filters) == 0 else [int(f) for f in filters]
    group = self.group or group_size(len(filters), jax.local_device_count(),
                                     limit or len(filters))
    if self.main.settings.steps < 2:  # no room for a lift
      return self.engine("follow").run(filters, seed=seed, chunk_size=group)
    lifted = self.engine("lift").run(filters, seed=seed, chunk_size=group)
    followed = self.engine("follow").run(filters, seed=seed, chunk_size=group,
                                         start_images=lifted.images)
    history = np.concatenate([lifted.activations[..., :-1], followed.activations], axis=-1)
    return followed._replace(activations=history)

  def revive(self, result: FilterResult, seed: int) -> FilterResult:
    """`result` with each dead image replaced by its second pass's where that one is live;
    `woken` `[N]` (or `[N, D]`) marks the replaced ones."""
    dead = dead_images(result)
    woken = np.zeros(dead.shape, bool)
    images, activations = result.images.copy(), result.activations.copy()
    robustness = None if result.robustness is None else result.robustness.copy()
    rows = np.flatnonzero(dead.reshape(len(dead), -1).any(axis=1))
    if len(rows):
      second = self.second_pass(result.filters[rows], seed, limit=len(result.filters))
    for k, row in enumerate(rows):
      better = dead[row] & ~dead_images(second)[k]
      if not np.any(better):
        continue
      woken[row] = better
      images[row] = np.where(_expand(better, images[row]), second.images[k], images[row])
      activations[row] = np.where(_expand(better, activations[row]), second.activations[k],
                                  activations[row])
      if robustness is not None:
        robustness[row] = np.where(better, second.robustness[k], robustness[row])
    return FilterResult(result.filters, images, activations, robustness, woken)


def _expand(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
  """A per-image mask (`()` or `[D]`) broadcast over one filter's array `like`."""
  mask = np.asarray(mask)
  return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))
