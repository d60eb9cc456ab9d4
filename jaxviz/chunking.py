"""How many filters go in one compiled chunk: as many as the memory budget holds, capped by
what runs fastest on the device.

The working set of one image is estimated from the layer shapes: every activation up to the
target layer is kept for the backward pass, and the backward pass holds about as much again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from jaxviz.errors import JaxvizError
from jaxviz.models.spec import ModelSpec

# Bytes per kept float32 activation element: the forward value, its gradient, and temporaries.
BYTES_PER_ACTIVATION = 4 * 3
# On CPUs a chunk is worked through in groups (`micro_batch`); more filters per chunk only save
# program launches, so this many suffice, and finished chunks reach the workdir regularly.
CPU_MAX_CHUNK = 64
# On CPUs, images ascend together in groups whose target-layer input holds at most about this
# many pixels (group size × height × width): enough rows for efficient convolutions, few enough
# to stay in cache. Measured on VGG16 at 64 px: block1 ran fastest one image at a time (64×64),
# block3 with 1–4 (16×16), block5 with 16 (4×4); LeNet conv2d_2 (14×14) with 1.
CPU_GROUP_PIXELS = 256
CPU_MAX_GROUP = 16
MEMINFO = Path("/proc/meminfo")


def activation_elements(spec: ModelSpec, layer: str, shape: tuple[int, int, int]) -> int:
  """Elements of every layer output up to and including `layer`, for one image `shape`."""
  names = spec.layer_names[:spec.layer_names.index(layer) + 1]
  return int(np.prod(shape)) + sum(int(np.prod(spec.output_shape(name, shape[0])))
                                   for name in names)


def micro_batch(spec: ModelSpec, layer: str, shape: tuple[int, int, int]) -> int:
  """Images that ascend together inside a chunk: on CPU, at most about `CPU_GROUP_PIXELS` pixels
  of the target layer's input (at least one image); 0 (the whole chunk at once) on
  accelerators."""
  if jax.default_backend() != "cpu":
    return 0
  seen = spec.output_shape(layer, shape[0], output="input")
  pixels = seen[0] * seen[1] if len(seen) == 3 else 1
  return int(min(CPU_MAX_GROUP, max(1, CPU_GROUP_PIXELS // pixels)))


def bytes_per_image(spec: ModelSpec, layer: str, shape: tuple[int, int, int]) -> int:
  return activation_elements(spec, layer, shape) * BYTES_PER_ACTIVATION


def default_budget_bytes(device: jax.Device | None = None) -> int:
  """Half the host's available memory on CPU; 80 % of the accelerator's memory otherwise."""
  device = device or jax.local_devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
      return int(stats["bytes_limit"] * 0.8)
  return available_host_bytes() // 2


def available_host_bytes() -> int:
  """The memory the host can give without swapping: Linux's `MemAvailable` (free pages plus
  the page cache it can drop), else the free pages, else 8 GiB. Free pages alone can be a few
  hundred MiB on a host whose cache holds the rest after large downloads."""
  try:
    found = re.search(r"^MemAvailable:\s+(\d+) kB", MEMINFO.read_text(), re.MULTILINE)
    if found:
      return int(found.group(1)) << 10
  except OSError:
    pass
  try:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError):
    return 8 << 30


def split(indices: Sequence[int], chunk_size: int) -> list[list[int]]:
  """Consecutive chunks of `chunk_size` indices, in order; the last may be short. Every chunk
  in jaxviz (a run, its resume state, its devices) is cut here."""
  indices = [int(i) for i in indices]
  return [indices[i:i + chunk_size] for i in range(0, len(indices), chunk_size)]


def round_up(size: int, multiple: int) -> int:
  """The smallest multiple of `multiple` that is at least `size` (a chunk shared by devices)."""
  return -(-size // multiple) * multiple


def pad(chunk: Sequence[int], size: int) -> list[int]:
  """`chunk` filled to `size` by repeating its last index: padded rows compute a real filter
  and are dropped, so a chunk's shape (and its compiled program) never depends on its length."""
  chunk = [int(i) for i in chunk]
  if not 0 < len(chunk) <= size:
    raise ValueError(f"a chunk of {len(chunk)} filters does not fit {size}")
  return chunk + chunk[-1:] * (size - len(chunk))


def check_images_fit(spec: ModelSpec, layer: str, shape: tuple[int, int, int], images: int,
                     memory_budget_mb: int = 0, fix: str = "lower size") -> None:
  """Refuses, before anything is computed, `images` images of `shape` `(H, W, C)` whose
  activations up to `layer` would not fit `memory_budget_mb` (0 = `default_budget_bytes()`)."""
  budget = (memory_budget_mb << 20) or default_budget_bytes()
  need = bytes_per_image(spec, layer, shape) * max(1, images)
  if need > budget:
    raise JaxvizError(
        f"{max(1, images)} image(s) of {shape[0]}×{shape[1]} px up to {layer!r} need about "
        f"{need / 2**20:,.0f} MiB, over the memory budget of {budget / 2**20:,.0f} MiB: {fix}.")


def resolve_chunk_size(spec: ModelSpec, layer: str, shape: tuple[int, int, int],
                       num_filters: int, chunk_size: int, memory_budget_mb: int = 0) -> int:
  """Filters per chunk (per device): `chunk_size` (at most `num_filters`), or for 0 what
  `choose_chunk_size` picks within `memory_budget_mb` (0 = `default_budget_bytes()`)."""
  if chunk_size < 0:
    raise JaxvizError(f"chunk_size must be ≥ 0 (0 = automatic), got {chunk_size}")
  if memory_budget_mb < 0:
    raise JaxvizError(f"memory_budget_mb must be ≥ 0 (0 = automatic), got {memory_budget_mb}")
  if chunk_size:
    chunk = min(chunk_size, num_filters)
    group = micro_batch(spec, layer, shape)  # only one group's activations are alive at a time
    check_images_fit(spec, layer, shape, min(chunk, group) if group else chunk,
                     memory_budget_mb, fix="lower chunk_size or size")
    return chunk
  return choose_chunk_size(spec, layer, shape, num_filters, memory_budget_mb << 20)


def choose_chunk_size(spec: ModelSpec, layer: str, shape: tuple[int, int, int], num_filters: int,
                      budget_bytes: int = 0, multiple_of: int = 1) -> int:
  """Filters per chunk: within `budget_bytes` (0 = `default_budget_bytes()`) and a multiple of
  `multiple_of` (devices). On CPU, at most `CPU_MAX_CHUNK` and a whole number of groups
  (`micro_batch`), which may exceed `num_filters`: the engine pads the chunk. Elsewhere, at
  most `num_filters`."""
  budget = budget_bytes or default_budget_bytes()
  per_image = bytes_per_image(spec, layer, shape)
  group = micro_batch(spec, layer, shape)
  # Only one group's activations are alive at a time; the chunk's images themselves are small.
  fits = budget // per_image if not group else (
      CPU_MAX_CHUNK if budget >= per_image * group else budget // per_image)
  if fits < multiple_of:
    raise JaxvizError(
        f"one image of {shape[0]}×{shape[1]} px at {layer!r} needs about "
        f"{per_image * multiple_of / 2**20:.0f} MiB on {multiple_of} device(s), over the memory "
        f"budget of {budget / 2**20:.0f} MiB. Raise memory_budget_mb or lower size.")
  if group:  # whole groups: the last chunk is padded to them rather than shrinking a group
    step = multiple_of * group
    return int(min(-(-num_filters // step) * step, max(step, fits // step * step)))
  chunk = min(fits, num_filters)
  return int(max(multiple_of, chunk // multiple_of * multiple_of))
