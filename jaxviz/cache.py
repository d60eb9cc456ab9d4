"""Where jaxviz keeps trained and converted weights, and compiled programs, on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import jax


def cache_dir() -> Path:
  """`$JAXVIZ_CACHE`, else `$XDG_CACHE_HOME/jaxviz`, else `~/.cache/jaxviz`."""
  if os.environ.get("JAXVIZ_CACHE"):
    return Path(os.environ["JAXVIZ_CACHE"])
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "jaxviz"


def default_weights_path(model: str, dataset: str = "digits", top: bool = False) -> Path:
  """The checkpoint `jaxviz.loading.load_model(model)` reads when no weights are given.

  For VGG16, `top` picks the checkpoint with the classifier top (`jaxviz fetch-weights vgg16
  --top` writes it) instead of the convolutional base.
  """
  if model == "lenet":
    return cache_dir() / f"lenet-{dataset}.msgpack"
  return cache_dir() / f"{model}-imagenet{'-top' if top else ''}.msgpack"


def keep_compiled_programs(platform: str | None = None) -> Path | None:
  """On an accelerator, keeps XLA's compiled programs in `cache_dir() / "xla"` (JAX's persistent
  compilation cache), so a job run again loads them instead of compiling them again.

  On an H100 a whole `block5_conv1` gallery spent 42 of its 61 s compiling (convolution
  autotuning at 512 images), and the same command run again took 29 s (BENCHMARKS.md, "GPU").
  On CPU (`platform` "cpu") nothing changes: compiles there take a second or two. A directory
  already given to JAX (`JAX_COMPILATION_CACHE_DIR`) is kept. Call it before the process
  compiles anything: JAX decides once whether to use the cache. `platform` defaults to JAX's
  default backend. Returns the directory in use, or None.
  """
  if (platform or jax.default_backend()) == "cpu":
    return None
  given = jax.config.jax_compilation_cache_dir
  if given:
    return Path(given)
  path = cache_dir() / "xla"
  jax.config.update("jax_compilation_cache_dir", str(path))
  return path
