"""Image regularizers after Yosinski et al. (2015), "Understanding Neural Networks Through Deep
Visualization", plus the penalties L1, L2 and total variation.

The Yosinski ones act on one pixel image `[H, W, C]` of offsets from the neutral pixel (0 is
the model's mean colour, or LeNet's background) after each optimizer update; `make_regularizer`
composes the ones switched on into `(image, grad, step, hp) → image`. Which ones run is fixed
when the step is compiled; their strengths come from the hyperparameters `hp` (traced arrays),
so other strengths compile nothing. The penalties are functions of the image that objectives
subtract (`jaxviz.objectives`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

Hyper = Mapping[str, jax.Array]
Regularizer = Callable[[jax.Array, jax.Array, int | jax.Array, Hyper], jax.Array]


def decay(image: jax.Array, rate: float | jax.Array) -> jax.Array:
  """L2 decay: shrinks every pixel toward 0 by the factor `1 - rate`."""
  return image * (1.0 - rate)


def blur(image: jax.Array, sigma: float | jax.Array) -> jax.Array:
  """Gaussian blur of `image` `[H, W, C]` with standard deviation `sigma` pixels, each channel
  alone; `sigma` may be traced, and any value costs the same.

  Computed in the frequency domain on the image mirrored at its edges (so edges behave like a
  reflecting border, and a constant image stays constant): the spectrum is multiplied by the
  Gaussian's, `exp(-2 π² σ² f²)`. `sigma` 0 gives `image` back exactly.
  """
  h, w, _ = image.shape
  mirrored = jnp.concatenate([image, image[::-1]], axis=0)
  mirrored = jnp.concatenate([mirrored, mirrored[:, ::-1]], axis=1)  # [2H, 2W, C]
  fy = np.fft.fftfreq(2 * h)[:, None]
  fx = np.fft.rfftfreq(2 * w)[None, :]
  response = jnp.exp(-2.0 * np.pi ** 2 * sigma ** 2 * jnp.asarray(fx ** 2 + fy ** 2, jnp.float32))
  spectrum = jnp.fft.rfft2(mirrored, axes=(0, 1)) * response[..., None]
  blurred = jnp.fft.irfft2(spectrum, s=(2 * h, 2 * w), axes=(0, 1))[:h, :w].astype(image.dtype)
  return jnp.where(sigma > 0, blurred, image)


def clip_small_norm(image: jax.Array, percentile: float | jax.Array) -> jax.Array:
  """Zeroes the pixels whose norm over channels is below the `percentile`-th percentile."""
  norms = jnp.sqrt(jnp.sum(image ** 2, axis=-1))
  keep = norms >= jnp.percentile(norms, percentile)
  return image * keep[..., None]


def clip_small_contribution(image: jax.Array, grad: jax.Array,
                            percentile: float | jax.Array) -> jax.Array:
  """Zeroes pixels whose estimated contribution `sum_c |x * grad|` is below the percentile."""
  contribution = jnp.sum(jnp.abs(image * grad), axis=-1)
  keep = contribution >= jnp.percentile(contribution, percentile)
  return image * keep[..., None]


def total_variation(image: jax.Array) -> jax.Array:
  """Mean absolute difference between neighbouring pixels, down plus across (a scalar)."""
  dy = jnp.abs(image[1:, :, :] - image[:-1, :, :])
  dx = jnp.abs(image[:, 1:, :] - image[:, :-1, :])
  return jnp.mean(dy) + jnp.mean(dx)


def l1(image: jax.Array) -> jax.Array:
  """Mean absolute value (a scalar)."""
  return jnp.mean(jnp.abs(image))


def l2(image: jax.Array) -> jax.Array:
  """Root mean square (a scalar)."""
  return jnp.sqrt(jnp.mean(image ** 2) + 1e-12)


def every(step: int | jax.Array, period: int, fn: Callable[[jax.Array], jax.Array],
          image: jax.Array) -> jax.Array:
  """Applies `fn` after every `period`-th step (steps counted from 0)."""
  due = (step + 1) % period == 0
  if isinstance(due, bool):  # step known while tracing: decide now, compile only what runs
    return fn(image) if due else image
  return jax.lax.cond(due, fn, lambda x: x, image)


def make_regularizer(*, decay_on: bool = False, blur_on: bool = False, blur_every: int = 1,
                     clip_norm_on: bool = False, clip_contribution_on: bool = False
                     ) -> Regularizer:
  """Composes the regularizers switched on, in Yosinski's order, reading their strengths from
  `hp`: "decay", "blur_sigma", "clip_norm_percentile", "clip_contribution_percentile"."""

  def regularize(image, grad, step, hp):
    if decay_on:
      image = decay(image, hp["decay"])
    if blur_on:
      image = every(step, blur_every, lambda x: blur(x, hp["blur_sigma"]), image)
    if clip_norm_on:
      image = clip_small_norm(image, hp["clip_norm_percentile"])
    if clip_contribution_on:
      image = clip_small_contribution(image, grad, hp["clip_contribution_percentile"])
    return image

  return regularize
