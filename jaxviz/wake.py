"""A second pass for the filters the main pass leaves dead: without transforms, in a chain of
parameterizations.

Some units of a real network (about one in six of the edge-tuned VGG16's `block5_conv1`) stay
at zero under the default preset whatever its step size, spectrum or transform ranges
(QUALITY.md): no image that survives random shifts, zooms and rotations makes them fire. Most
still fire for an image as it stands. This pass gives every dead image one more ascent of
`STEPS` of the main pass's steps, without transforms and with Adam at `STEP_SIZE`, in each
parameterization of `passes` in turn (config `wake_passes`), each taking the filters the ones
before it left dead:

- `fourier`: the main pass's decorrelated spectrum (its slope and ramp), squashed into the
  pixel range. On `block5_conv1` it wakes 74 of the 88 filters the default's main pass leaves
  dead, as textures like the main pass's, at about twice the activation pixels reach;
- `pixel`: bounded pixels (`param.pixel`, a sigmoid onto 0–255), an image made for the pixel
  grid as it stands, grey noise to the eye; it wakes 8 of the 14 the spectrum leaves dead.

Each pass has two parts:

1. *lift* (the first `LIFT` of its steps): the mean of the filter's map **before** its ReLU,
   which pushes every position up;
2. *follow*: the main objective with the rescue's peak rule (while nothing fires, the place
   closest to firing is pushed; then the post-ReLU mean), from the lifted image. Units just
   below their threshold (two of LeNet-MNIST's) fire this way and not through a leaky ReLU,
   which spreads the push over the whole map.

Where it ends live, its image, activation history and robustness replace the dead one, and
`woken` marks it: such an image excites the unit only as it stands (its robustness is
typically near 0), which the gallery's records say rather than hide. Where every pass leaves
it dead, the main pass's result stays.

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

from jaxviz import chunking, gallery, param
from jaxviz.engine import AscentSettings, FilterEngine, FilterResult
from jaxviz.errors import JaxvizError

STEP_SIZE = 0.05  # Adam on the variables: measured on block5_conv1's dead filters (QUALITY.md)
LIFT = 0.5        # the part of the pass's steps that follows the map before its ReLU
STEPS = 0.5       # the pass's steps, as a fraction of the main pass's
PASSES = ("pixel",)  # config `wake_passes` absent: what runs saved before it existed did


def parse_passes(text: str) -> tuple[str, ...]:
  """`"fourier,pixel"` → `("fourier", "pixel")`: the parameterizations the second pass tries,
  in order; a clear error for an empty list, an unknown name or a repeated one."""
  passes = tuple(name.strip() for name in str(text).split(",") if name.strip())
  unknown_names = [name for name in passes if name not in param.KINDS]
  if not passes or unknown_names or len(set(passes)) != len(passes):
    raise JaxvizError(f"wake_passes must name each of {', '.join(param.KINDS)} at most once, in "
                      f"the order the second pass tries them, e.g. 'fourier,pixel'; got {text!r}")
  return passes


def wake_settings(settings: AscentSettings, parameterization: str = "pixel") -> AscentSettings:
  """The main settings for one pass of the second pass: `parameterization` (bounded, the main
  pass's spectrum for `fourier`), no transforms, no pixel-space regularizers, Adam at
  `STEP_SIZE`, the lift for `LIFT` of the steps then the rescue's peak rule, `STEPS` of the
  main pass's steps (at least one)."""
  return dataclasses.replace(
      settings, parameterization=parameterization, bounded=True, optimizer="adam",
      step_size=STEP_SIZE, schedule="constant", normalize_grad=False, pad=0.0, jitter=0.0,
      scale=0.0, rotate=0.0, frame=0.0, crop=1.0, average=0.0, decay=0.0, blur_sigma=0.0,
      clip_norm_percentile=0.0, clip_contribution_percentile=0.0, rescue=True,
      rescue_slope=0.0, lift=LIFT, steps=max(1, round(settings.steps * STEPS)))


def group_size(count: int, devices: int, limit: int) -> int:
  """Filters per call for `count` dead filters of a chunk of `limit` on `devices` devices: the
  smallest power-of-two multiple of `devices` that holds them all, at most `limit` rounded up to
  a multiple of `devices`. Powers of two keep the number of compiled shapes small; a padded
  slot costs little (on `block5_conv1`, 5 dead filters took 21 s in groups of 6 and of 8)."""
  group = devices
  while group < count:
    group *= 2
  return min(group, chunking.round_up(max(limit, 1), devices))


def dead_images(result: FilterResult) -> np.ndarray:
  """`[N]` (or `[N, D]`) bool: images whose final true activation is dead (`gallery.is_dead`)."""
  return gallery.is_dead(result.activations[..., -1])


class Waker:
  """Runs the second pass for one layer: built from the main pass's engine, one engine per
  parameterization of `passes`, each compiled the first time a dead filter reaches it, once for
  each group size (`group` filters per call, or for None `group_size` of the dead filters and
  the chunk)."""

  def __init__(self, engine: FilterEngine, group: int | None = None,
               passes: Sequence[str] = PASSES):
    self.main = engine
    self.group = group
    self.passes = parse_passes(",".join(passes))
    self._engines: dict[str, FilterEngine] = {}

  def engine(self, parameterization: str) -> FilterEngine:
    """The engine of the pass in `parameterization` (built on first use)."""
    if parameterization not in self._engines:
      main = self.main
      self._engines[parameterization] = FilterEngine(
          main.model, main.layer, wake_settings(main.settings, parameterization),
          main.image_shape[0])
    return self._engines[parameterization]

  def second_pass(self, filters: int | Sequence[int], seed: int, limit: int = 0,
                  parameterization: str | None = None) -> FilterResult:
    """One pass (in `parameterization`, default the first of `passes`) of `filters` (one index
    or several), each as if on its own: their images, activation history `[n, (D,) steps + 1]`
    and robustness. `limit`: the most filters one call may take (the main pass's chunk; 0: all
    of `filters`)."""
    filters = [int(filters)] if np.ndim(filters) == 0 else [int(f) for f in filters]
    group = self.group or group_size(len(filters), jax.local_device_count(),
                                     limit or len(filters))
    return self.engine(parameterization or self.passes[0]).run(filters, seed=seed,
                                                               chunk_size=group)

  def revive(self, result: FilterResult, seed: int) -> FilterResult:
    """`result` with each dead image replaced by the first pass of `passes` that makes it fire;
    `woken` `[N]` (or `[N, D]`) marks the replaced ones. A woken image's activation history is
    its pass's, which has fewer steps: right-aligned, NaN before it."""
    woken = np.zeros(result.activations.shape[:-1], bool)
    images, activations = result.images.copy(), result.activations.copy()
    robustness = None if result.robustness is None else result.robustness.copy()
    for parameterization in self.passes:
      dead = gallery.is_dead(activations[..., -1])
      rows = np.flatnonzero(dead.reshape(len(dead), -1).any(axis=1))
      if not len(rows):
        break
      second = self.second_pass(result.filters[rows], seed, limit=len(result.filters),
                                parameterization=parameterization)
      for k, row in enumerate(rows):
        better = dead[row] & ~dead_images(second)[k]
        if not np.any(better):
          continue
        woken[row] |= better
        images[row] = np.where(_expand(better, images[row]), second.images[k], images[row])
        history = _right_aligned(second.activations[k], activations.shape[-1])
        activations[row] = np.where(_expand(better, activations[row]), history,
                                    activations[row])
        if robustness is not None:
          robustness[row] = np.where(better, second.robustness[k], robustness[row])
    return FilterResult(result.filters, images, activations, robustness, woken)


def _expand(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
  """A per-image mask (`()` or `[D]`) broadcast over one filter's array `like`."""
  mask = np.asarray(mask)
  return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))


def _right_aligned(history: np.ndarray, length: int) -> np.ndarray:
  """`history` `[..., n]` padded on the left with NaN to `[..., length]`."""
  pad = np.full(history.shape[:-1] + (length - history.shape[-1],), np.nan, history.dtype)
  return np.concatenate([pad, history], axis=-1)
