"""Running a compiled per-batch function over many examples in fixed-size chunks."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from jaxviz.errors import JaxvizError


def map_batches(fn: Callable, arrays: tuple[np.ndarray, ...], batch_size: int = 0):
  """Applies `fn(*chunk)` to chunks of `batch_size` examples along axis 0 and joins the results.

  Every chunk has the same shape (the last is padded by repeating its last example, and the
  padding is dropped from the results), so a jitted `fn` compiles once. `batch_size` 0 runs
  all examples as one chunk. `fn` returns a pytree of arrays with a leading example axis.
  """
  n = len(arrays[0])
  if batch_size < 0:
    raise JaxvizError(f"batch_size must be ≥ 0 (0 = all at once), got {batch_size}")
  size = min(batch_size or n, n)
  parts = []
  for lo in range(0, n, size):
    chunk = [a[lo:lo + size] for a in arrays]
    pad = size - len(chunk[0])
    if pad:
      chunk = [np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in chunk]
    out = fn(*chunk)
    parts.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[:size - pad], out))
  return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *parts)
