"""Random image transforms applied before each forward pass, for images robust to small changes.

Each transform acts on one image `[H, W, C]` in the model's input space, where 0 is the
neutral pixel; what moves in from outside the image is that neutral value. Ranges are relative
to the image, so a preset means the same on a 28-pixel digit and a 224-pixel photo:

- `pad(fraction)`: a border of `round(fraction · side)` neutral pixels (static; the image grows).
- `jitter()`: a random shift of up to `hp["jitter"] · side` pixels on each axis (whole pixels).
- `scale()`: a random zoom by a factor in `[1 - hp["scale"], 1 + hp["scale"]]`.
- `rotate()`: a random rotation by up to `hp["rotate"]` degrees either way.
- `frame()`: a neutral frame of `hp["frame"] · side` on every side, the view resized back to
  the image's side, so the network sees the image shrunk by `1 / (1 + 2 · hp["frame"])` with
  the neutral colour around it. This is what Lucid's and Lucent's pad does when the image is
  fed at a fixed size (Lucent's `fixed_image_size`): the plain image is never one of the views.
- `crop(fraction)`: a random square window of `round(fraction · side)` pixels (static; the view
  shrinks, the pixel scale stays): each step sees, and pays for, only part of the image.

Shifts, zooms, rotations and the frame are affine maps: `compose` multiplies consecutive ones
and samples the image once (bilinear), so a chain costs one resampling whatever its length.
Ranges come from the hyperparameters `hp` (traced arrays), so other ranges compile nothing. The
engine gives every image its own key per step, so a filter's transforms do not depend on its
batch; unlike Lucid, which draws one transform for the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Hyper = Mapping[str, jax.Array]


class Transform(NamedTuple):
  """Either an affine map, `affine(key, hp, (H, W)) → [3, 3]` taking output pixel coordinates
  (row, column, 1; centred) to input ones, or an image function `apply(key, image, hp) →
  image`. Exactly one is set."""
  name: str
  affine: Callable[[jax.Array, Hyper, tuple[int, int]], jax.Array] | None = None
  apply: Callable[[jax.Array, jax.Array, Hyper], jax.Array] | None = None


def pad(fraction: float) -> Transform:
  """A neutral border of `round(fraction · side)` pixels on every side."""
  def apply(key, image, hp):
    width = int(round(fraction * max(image.shape[:2])))
    return jnp.pad(image, ((width, width), (width, width), (0, 0)))
  return Transform("pad", apply=apply)


def window_side(fraction: float, side: int) -> int:
  """The side of `crop(fraction)`'s window on an image side of `side` pixels (at least 1)."""
  return max(1, int(round(fraction * side)))


def crop(fraction: float) -> Transform:
  """A window of `window_side(fraction, H) × window_side(fraction, W)` pixels at a random
  position, whole pixels, nothing resampled."""
  def apply(key, image, hp):
    h, w, c = image.shape
    ch, cw = window_side(fraction, h), window_side(fraction, w)
    row_key, col_key = jax.random.split(key)
    row = jax.random.randint(row_key, (), 0, h - ch + 1)
    col = jax.random.randint(col_key, (), 0, w - cw + 1)
    return jax.lax.dynamic_slice(image, (row, col, 0), (ch, cw, c))
  return Transform("crop", apply=apply)


def jitter(name: str = "jitter") -> Transform:
  """A random shift of up to `hp[name] · side` whole pixels on each axis."""
  def affine(key, hp, size):
    limit = jnp.floor(hp[name] * jnp.asarray(size, jnp.float32))
    shift = jnp.round(jax.random.uniform(key, (2,), minval=-limit - 0.5, maxval=limit + 0.5))
    shift = jnp.clip(shift, -limit, limit)
    return jnp.array([[1.0, 0.0, -shift[0]], [0.0, 1.0, -shift[1]], [0.0, 0.0, 1.0]])
  return Transform(name, affine=affine)


def scale(name: str = "scale") -> Transform:
  """A random zoom about the centre by a factor in `[1 - hp[name], 1 + hp[name]]`."""
  def affine(key, hp, size):
    s = 1.0 + jax.random.uniform(key, (), minval=-1.0, maxval=1.0) * hp[name]
    return jnp.diag(jnp.array([1.0 / s, 1.0 / s, 1.0]))
  return Transform(name, affine=affine)


def rotate(name: str = "rotate") -> Transform:
  """A random rotation about the centre by up to `hp[name]` degrees either way."""
  def affine(key, hp, size):
    angle = jnp.deg2rad(jax.random.uniform(key, (), minval=-1.0, maxval=1.0) * hp[name])
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
  return Transform(name, affine=affine)


def frame(name: str = "frame") -> Transform:
  """A neutral frame of `hp[name] · side` pixels on every side, the view then resized back to
  the image's side: the image seen shrunk by `1 / (1 + 2 · hp[name])` (Lucent's pad at a fixed
  image size). Not random."""
  def affine(key, hp, size):
    grow = 1.0 + 2.0 * hp[name]
    return jnp.diag(jnp.stack([grow, grow, jnp.float32(1.0)]))
  return Transform(name, affine=affine)


def sample_affine(image: jax.Array, matrix: jax.Array) -> jax.Array:
  """Bilinear resampling of `image` `[H, W, C]`: output pixel p takes the input at `matrix @ p`
  (centred pixel coordinates); outside the image reads as 0. Same shape out."""
  h, w, c = image.shape
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                            jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")
  rows, cols = rows.ravel(), cols.ravel()
  # Written out rather than as a dot product, so every placement of the computation (one
  # device or many) rounds the same way.
  r = matrix[0, 0] * rows + matrix[0, 1] * cols + matrix[0, 2] + (h - 1) / 2
  q = matrix[1, 0] * rows + matrix[1, 1] * cols + matrix[1, 2] + (w - 1) / 2
  r0, q0 = jnp.floor(r), jnp.floor(q)
  fr, fq = r - r0, q - q0
  padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0))).reshape(-1, c)

  def tap(dr, dq):
    # Indices into the zero-padded image; anything further out reads the zero border.
    ri = jnp.clip(r0 + dr + 1, 0, h + 1).astype(jnp.int32)
    qi = jnp.clip(q0 + dq + 1, 0, w + 1).astype(jnp.int32)
    return padded[ri * (w + 2) + qi]

  out = (tap(0, 0) * ((1 - fr) * (1 - fq))[:, None] + tap(0, 1) * ((1 - fr) * fq)[:, None]
         + tap(1, 0) * (fr * (1 - fq))[:, None] + tap(1, 1) * (fr * fq)[:, None])
  return out.reshape(h, w, c)


def _compose(a: jax.Array, b: jax.Array) -> jax.Array:
  """`a @ b` for 3×3 matrices, summed in a fixed order (see `sample_affine`)."""
  return a[:, 0:1] * b[0:1, :] + a[:, 1:2] * b[1:2, :] + a[:, 2:3] * b[2:3, :]


def compose(transforms: Sequence[Transform]) -> Callable[[jax.Array, jax.Array, Hyper],
                                                         jax.Array]:
  """One function `(key, image, hp) → image` applying `transforms` in order; consecutive affine
  ones are multiplied into one map and sampled once. No transforms: the identity.

  Transform i draws from `split(key, n)[j]`, j the number of transforms before it that are
  active; one whose range `hp[name]` is 0 is the exact identity and counts as inactive, so a
  chain with a transform switched on at 0 gives the same images as the chain without it (the
  keys of `split` do not depend on n).
  """
  transforms = tuple(transforms)

  def apply(key, image, hp):
    keys = jax.random.split(key, max(1, len(transforms)))
    matrix, j = None, 0
    for t in transforms:
      k = keys[j]
      j = j + (1 if t.name not in hp else jnp.asarray(hp[t.name] > 0, jnp.int32))
      if t.affine is not None:
        m = t.affine(k, hp, image.shape[:2])
        matrix = m if matrix is None else _compose(matrix, m)
        continue
      if matrix is not None:
        image, matrix = sample_affine(image, matrix), None
      image = t.apply(k, image, hp)
    return image if matrix is None else sample_affine(image, matrix)

  return apply


def make(pad_fraction: float = 0.0, jitter_on: bool = False, scale_on: bool = False,
         rotate_on: bool = False, crop_fraction: float = 1.0, frame_on: bool = False,
         crop_first: bool = False) -> list[Transform]:
  """Lucid's order: pad, jitter, scale, rotate; each present only when switched on. Then the
  frame, when `frame_on`, and the crop, when `crop_fraction` < 1.

  `crop_first` cuts the window before everything else instead: the other transforms then move
  the window's own content, so the neutral value enters at the view's edges, as it does under
  the held-out transforms, and the image's content meets the network's zero padding only where
  a zoom pushes it past the edge."""
  window = [crop(crop_fraction)] if crop_fraction < 1 else []
  moves = [pad(pad_fraction)] if pad_fraction > 0 else []
  moves += [jitter()] if jitter_on else []
  moves += [scale()] if scale_on else []
  moves += [rotate()] if rotate_on else []
  moves += [frame()] if frame_on else []
  return window + moves if crop_first else moves + window


# The held-out transforms `robustness` is measured under (never used by the optimization's own
# keys): shifts up to ±6 % of the side, zoom 0.9–1.1, rotation up to ±10°.
ROBUSTNESS_HP = {"jitter": np.float32(0.06), "scale": np.float32(0.1), "rotate": np.float32(10.0)}
ROBUSTNESS_SEED = 20171107  # the day "Feature Visualization" appeared on Distill


def robustness_chain() -> list[Transform]:
  """The held-out transform's parts: a shift (not rounded to whole pixels), a zoom, a rotation,
  with ranges from `ROBUSTNESS_HP`."""
  return [_shift(), scale(), rotate()]


def robustness_transform() -> Callable[[jax.Array, jax.Array], jax.Array]:
  """`(key, image) → image`: the held-out transform with `ROBUSTNESS_HP`."""
  chain = compose(robustness_chain())
  hp = {k: jnp.asarray(v) for k, v in ROBUSTNESS_HP.items()}
  return lambda key, image: chain(key, image, hp)


def _shift() -> Transform:
  def affine(key, hp, size):
    shift = jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0) * hp["jitter"] * jnp.asarray(
        size, jnp.float32)
    return jnp.array([[1.0, 0.0, -shift[0]], [0.0, 1.0, -shift[1]], [0.0, 0.0, 1.0]])
  return Transform("shift", affine=affine)
