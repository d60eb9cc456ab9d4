"""Image regularizers after Yosinski et al. (2015), "Understanding Neural Networks Through Deep
Visualization", plus total variation.

Each acts on one image `[H, W, C]` in the model's input space, where 0 is the neutral value
(the mean pixel for VGG16, the background for LeNet). `make_regularizer` composes the enabled
ones into `(image, grad, step) → image`, applied after each optimizer update.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Regularizer = Callable[[jax.Array, jax.Array, int | jax.Array], jax.Array]


def decay(image: jax.Array, rate: float) -> jax.Array:
  """L2 decay: shrinks every pixel toward 0 by the factor `1 - rate`."""
  return image * (1.0 - rate)


def gaussian_kernel(sigma: float) -> np.ndarray:
  """A normalized 1-D Gaussian `[2r + 1]`, r = ceil(3 sigma): it sums to 1."""
  radius = max(1, math.ceil(3 * sigma))
  t = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (t / sigma) ** 2)
  return (k / k.sum()).astype(np.float32)


def blur(image: jax.Array, sigma: float) -> jax.Array:
  """Separable Gaussian blur of `image` `[H, W, C]`, each channel alone.

  Edges are padded by replication, so a constant image stays constant.
  """
  k = jnp.asarray(gaussian_kernel(sigma))
  r = (k.shape[0] - 1) // 2
  x = jnp.pad(image, ((r, r), (r, r), (0, 0)), mode="edge")
  h, w, _ = image.shape
  x = sum(k[i] * x[i:i + h, :, :] for i in range(k.shape[0]))
  x = sum(k[i] * x[:, i:i + w, :] for i in range(k.shape[0]))
  return x


def clip_small_norm(image: jax.Array, percentile: float) -> jax.Array:
  """Zeroes the pixels whose norm over channels is below the `percentile`-th percentile."""
  norms = jnp.sqrt(jnp.sum(image ** 2, axis=-1))
  keep = norms >= jnp.percentile(norms, percentile)
  return image * keep[..., None]


def clip_small_contribution(image: jax.Array, grad: jax.Array, percentile: float) -> jax.Array:
  """Zeroes pixels whose estimated contribution `sum_c |x * grad|` is below the percentile."""
  contribution = jnp.sum(jnp.abs(image * grad), axis=-1)
  keep = contribution >= jnp.percentile(contribution, percentile)
  return image * keep[..., None]


def total_variation(image: jax.Array) -> jax.Array:
  """Mean absolute difference between neighbouring pixels, down plus across (a scalar)."""
  dy = jnp.abs(image[1:, :, :] - image[:-1, :, :])
  dx = jnp.abs(image[:, 1:, :] - image[:, :-1, :])
  return jnp.mean(dy) + jnp.mean(dx)


def every(step: int | jax.Array, period: int, fn: Callable[[jax.Array], jax.Array],
          image: jax.Array) -> jax.Array:
  """Applies `fn` after every `period`-th step (steps counted from 0)."""
  due = (step + 1) % period == 0
  if isinstance(due, bool):  # step known while tracing: decide now, compile only what runs
    return fn(image) if due else image
  return jax.lax.cond(due, fn, lambda x: x, image)


def make_regularizer(*, decay_rate: float = 0.0, blur_sigma: float = 0.0, blur_every: int = 1,
                     clip_norm_percentile: float = 0.0,
                     clip_contribution_percentile: float = 0.0) -> Regularizer:
  """Composes the enabled regularizers (a value of 0 leaves one out) in Yosinski's order."""

  def regularize(image, grad, step):
    if decay_rate > 0:
      image = decay(image, decay_rate)
    if blur_sigma > 0:
      image = every(step, blur_every, lambda x: blur(x, blur_sigma), image)
    if clip_norm_percentile > 0:
      image = clip_small_norm(image, clip_norm_percentile)
    if clip_contribution_percentile > 0:
      image = clip_small_contribution(image, grad, clip_contribution_percentile)
    return image

  return regularize
