"""Random image transforms applied before each forward pass: `(key, image) → image`.

They act on one image `[H, W, C]`; the engine vmaps them with one key per filter and step, so a
filter's randomness does not depend on which filters share its batch. Gradients flow through
them back to the untransformed image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def jitter(key: jax.Array, image: jax.Array, max_shift: int) -> jax.Array:
  """Rolls `image` `[H, W, C]` by a random shift in [-max_shift, max_shift] on each axis."""
  if max_shift <= 0:
    return image
  dy, dx = jax.random.randint(key, (2,), -max_shift, max_shift + 1)
  return jnp.roll(image, (dy, dx), axis=(0, 1))
