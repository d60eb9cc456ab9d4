"""One JAX device per CPU core: how a single process splits a CPU host before JAX starts.

XLA:CPU runs each operation of a step across all cores, but a step of LeNet or of VGG16's
first blocks is hundreds of small operations (tens of microseconds each) that gain little from
a second core. Split into one device per core, each device takes its own share of the filters
(`FilterEngine.run`; the gallery job's chunks, `jaxviz.distributed`) and runs it on its own
core, oneDNN's convolutions included (`jaxviz.onednn`: one thread per device). Measured in
BENCHMARKS.md ("One device per core").

A filter's images do not depend on how many devices share the work (`jaxviz.engine`), so the
split changes speed only.
"""

from __future__ import annotations

import os

import jax

def cores() -> int:
  """CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def chosen_elsewhere() -> bool:
  """True when the device count was already chosen: by `XLA_FLAGS`, `JAX_NUM_CPU_DEVICES` or
  `jax.config` — then it is left as it is."""
  return ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
          or "JAX_NUM_CPU_DEVICES" in os.environ
          or jax.config.jax_num_cpu_devices not in (-1, None))


def split_cpu() -> int:
  """Asks JAX for one CPU device per core, before its backend starts, and oneDNN for one
  thread per device; returns the device count asked for, or 1 where the host is left as one
  device: a single core, a count chosen elsewhere (`chosen_elsewhere`), or a backend already
  started in this process (the split must come first).

  On a machine with an accelerator it changes nothing the engine uses: only the CPU's devices.
  """
  count = cores()
  if count < 2 or chosen_elsewhere():
    return 1
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:  # the backend is up: too late to split
    return 1
  # oneDNN (OpenMP) reads this when it loads, on first use: each device's calls then run on one
  # thread instead of every device's running on all cores at once.
  os.environ.setdefault("OMP_NUM_THREADS", "1")
  return count
