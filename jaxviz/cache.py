"""Where jaxviz keeps trained and converted weights on this machine."""

from __future__ import annotations

import os
from pathlib import Path


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
