"""Parameterizations: how the optimized variables become an image.

A `Parameterization` pairs `init(rng, shape) → vars`, the start of one image's variables, with
`to_pixels(vars) → pixels [H, W, C]` on the 0–255 scale (RGB or grey, the model's display
order); the engine then maps pixels to the model's input with `ModelSpec.pixels_to_input`.
The optimizer sees only `vars`, so a step size means the same thing on every model:

- `pixel`: the variables are the pixels themselves, stored as offsets from the model's neutral
  pixel (its mean colour; black for LeNet), in 0–255 units. A step of 1.0 moves a pixel by one
  grey level, as in the seeds. Unbounded, or squashed into 0–255 by a sigmoid (`bounded`).
- `fourier`: Lucid's spectral parameterization (Olah et al., "Feature Visualization", 2017).
  The variables are rfft2 coefficients `[C, H, W//2 + 1, 2]` (real, imaginary), scaled by
  `1 / max(f, 1/max(H, W)) ** decay_power` so that all frequencies learn at a natural-image
  rate; for RGB the three channels are first decorrelated with the square root of ImageNet's
  colour correlation, and a sigmoid maps everything onto 0–255.

`init` draws from a NumPy generator (no compilation; the engine seeds one per filter and image).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.errors import JaxvizError, unknown

KINDS = ("pixel", "fourier")

# Lucid's square root of the colour correlation of ImageNet, RGB, as columns.
COLOR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02],
                                   [0.27, 0.00, -0.05],
                                   [0.27, -0.09, 0.03]], np.float32)
COLOR_CORRELATION = COLOR_CORRELATION_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))
# Lucid divides the spectral image by this; a smaller spread keeps the sigmoid out of saturation.
FOURIER_MAGIC = 4.0


class Parameterization(NamedTuple):
  """`init(rng, (H, W, C)) → vars` float32, `to_pixels(vars) → [H, W, C]` (0–255 scale), and
  its inverse `from_pixels` (to start from given images; bounded parameterizations clip the
  pixels just inside 0–255 first).

  `pixel_space` is True when the variables are pixel offsets, so that pixel-space regularizers
  (blur, clipping of weak pixels) may act on them directly.
  """
  name: str
  init: Callable[[np.random.Generator, tuple[int, int, int]], np.ndarray]
  to_pixels: Callable[[jax.Array], jax.Array]
  from_pixels: Callable[[jax.Array], jax.Array]
  pixel_space: bool


def pixel(neutral: np.ndarray, init_noise: float = 20.0, bounded: bool = False
          ) -> Parameterization:
  """Pixels as variables: offsets from `neutral` `[C]` in 0–255 units.

  The start is the seeds' one: grey 128 plus uniform noise of width `init_noise` pixels.
  `bounded` squashes `neutral + vars` into (0, 255) with a sigmoid (then the variables are
  logits around the neutral pixel).
  """
  neutral = np.asarray(neutral, np.float32)

  def init(rng, shape):
    grey = 128.0 + (rng.random(shape, np.float32) - 0.5) * init_noise
    if bounded:
      return (_logit(grey / 255.0) - _logit(neutral / 255.0)).astype(np.float32)
    return (grey - neutral).astype(np.float32)

  def to_pixels(v):
    if bounded:
      return 255.0 * jax.nn.sigmoid(v + _logit(neutral / 255.0))
    return v + neutral

  def from_pixels(p):
    if bounded:
      return _traced_logit(p / 255.0) - _logit(neutral / 255.0)
    return p - neutral

  return Parameterization("pixel", init, to_pixels, from_pixels, pixel_space=not bounded)


def _logit(p: np.ndarray) -> np.ndarray:
  p = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
  return np.log(p / (1 - p)).astype(np.float32)


def _traced_logit(p: jax.Array) -> jax.Array:
  """The sigmoid's inverse, for fractions clipped to [1/510, 509/510] (half a grey level in)."""
  p = jnp.clip(p, 0.5 / 255.0, 254.5 / 255.0)
  return jnp.log(p) - jnp.log1p(-p)


def spectrum_scale(h: int, w: int, decay_power: float) -> np.ndarray:
  """`[H, W//2 + 1]` the factor each rfft2 coefficient is multiplied by: `1 / max(f,
  1/max(H, W)) ** decay_power` with f the frequency's magnitude in cycles per pixel, times
  `sqrt(H·W)`, so that after the inverse FFT (which divides by H·W) a unit step in every
  coefficient moves pixels as much as a unit step in pixel space would: the FFT is unitary."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  freqs = np.sqrt(fx * fx + fy * fy)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
  return (scale * np.sqrt(h * w)).astype(np.float32)


def slope_ratio(h: int, w: int, start: float, end: float) -> np.ndarray:
  """`[H, W//2 + 1]` `spectrum_scale` at slope `end` over that at slope `start`: how much larger
  each coefficient's step is when the spectrum is `end` steep. With Adam (whose steps do not
  depend on the gradient's scale) a spectrum built at `start` whose steps are multiplied by
  this ratio ascends as one built at `end`, so the slope can change during a run."""
  return (spectrum_scale(h, w, end) / spectrum_scale(h, w, start)).astype(np.float32)


def fourier(shape: tuple[int, int, int], decay_power: float = 1.0, decorrelate: bool = True,
            init_sd: float = 0.01) -> Parameterization:
  """Lucid's decorrelated spectral image for images of `shape` `(H, W, C)`.

  Variables `[C, H, W//2 + 1, 2]` start as Gaussian noise of standard deviation `init_sd`
  (a nearly flat grey image). `decorrelate` applies the colour decorrelation (RGB only; grey
  images have nothing to decorrelate).
  """
  h, w, c = shape
  scale = spectrum_scale(h, w, decay_power)
  mix = COLOR_CORRELATION.T if (decorrelate and c == 3) else None

  def init(rng, image_shape):
    if tuple(image_shape) != (h, w, c):
      raise ValueError(f"this parameterization makes {(h, w, c)} images, not {image_shape}")
    return (rng.standard_normal((c, h, w // 2 + 1, 2)) * init_sd).astype(np.float32)

  def to_pixels(v):
    coefficients = (v[..., 0] + 1j * v[..., 1]) * scale
    image = jnp.fft.irfft2(coefficients, s=(h, w))  # [C, H, W]
    image = jnp.moveaxis(image, 0, -1) / FOURIER_MAGIC
    if mix is not None:
      image = image @ jnp.asarray(mix)
    return 255.0 * jax.nn.sigmoid(image)

  def from_pixels(p):
    image = _traced_logit(p / 255.0)
    if mix is not None:
      image = image @ jnp.asarray(np.linalg.inv(mix))
    image = jnp.moveaxis(image * FOURIER_MAGIC, -1, 0)
    coefficients = jnp.fft.rfft2(image, s=(h, w)) / scale
    return jnp.stack([coefficients.real, coefficients.imag], axis=-1).astype(jnp.float32)

  return Parameterization("fourier", init, to_pixels, from_pixels, pixel_space=False)


def make(kind: str, shape: tuple[int, int, int], neutral: np.ndarray, *, init_noise: float = 20.0,
         bounded: bool = False, decay_power: float = 1.0, decorrelate: bool = True
         ) -> Parameterization:
  """The parameterization named `kind` ("pixel" or "fourier") for images of `shape`."""
  if kind == "pixel":
    return pixel(neutral, init_noise, bounded)
  if kind == "fourier":
    if decay_power < 0:
      raise JaxvizError(f"decay_power must be ≥ 0, got {decay_power}")
    return fourier(shape, decay_power, decorrelate)
  raise unknown("parameterization", kind, KINDS)
