"""How many filters go in one compiled chunk: as many as the memory budget holds, capped by
what runs fastest on the device.

The working set of one image is estimated from the layer shapes: every activation up to the
target layer is kept for the backward pass, and the backward pass holds about as much again.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

from jaxviz.errors import JaxvizError
from jaxviz.models.spec import ModelSpec

# Bytes per kept float32 activation element: the forward value, its gradient, and temporaries.
BYTES_PER_ACTIVATION = 4 * 3
# On CPUs, batches larger than this ran no faster per filter (the working set leaves the caches).
CPU_MAX_CHUNK = 16


def activation_elements(spec: ModelSpec, layer: str, shape: tuple[int, int, int]) -> int:
  """Elements of every layer output up to and including `layer`, for one image `shape`."""
  x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
  names = spec.layer_names[:spec.layer_names.index(layer) + 1]
  total = int(jnp.prod(jnp.array(shape)))
  for name in names:
    out, _ = jax.eval_shape(
        functools.partial(spec.module.init_with_output, upto=name), jax.random.key(0), x)
    total += out.size
  return total


def bytes_per_image(spec: ModelSpec, layer: str, shape: tuple[int, int, int]) -> int:
  return activation_elements(spec, layer, shape) * BYTES_PER_ACTIVATION


def default_budget_bytes(device: jax.Device | None = None) -> int:
  """Half the host's available memory on CPU; 80 % of the accelerator's memory otherwise."""
  device = device or jax.local_devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
      return int(stats["bytes_limit"] * 0.8)
  try:
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError):
    available = 8 << 30
  return available // 2


def choose_chunk_size(spec: ModelSpec, layer: str, shape: tuple[int, int, int], num_filters: int,
                      budget_bytes: int = 0, multiple_of: int = 1) -> int:
  """Filters per chunk: within `budget_bytes` (0 = `default_budget_bytes()`), at most
  `num_filters`, at most `CPU_MAX_CHUNK` on CPU, and a multiple of `multiple_of` (devices)."""
  budget = budget_bytes or default_budget_bytes()
  per_image = bytes_per_image(spec, layer, shape)
  fits = budget // per_image
  if fits < multiple_of:
    raise JaxvizError(
        f"one image of {shape[0]}×{shape[1]} px at {layer!r} needs about "
        f"{per_image * multiple_of / 2**20:.0f} MiB on {multiple_of} device(s), over the memory "
        f"budget of {budget / 2**20:.0f} MiB. Raise memory_budget_mb or lower size.")
  chunk = min(fits, num_filters)
  if jax.default_backend() == "cpu":
    chunk = min(chunk, CPU_MAX_CHUNK)
  chunk = max(multiple_of, chunk // multiple_of * multiple_of)
  return int(chunk)
