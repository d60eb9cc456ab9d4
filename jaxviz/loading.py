"""`load_model`: a model spec plus weights from a jaxviz checkpoint or a Keras file."""

from __future__ import annotations

import os
from pathlib import Path

from jaxviz import checkpoint
from jaxviz.errors import JaxvizError
from jaxviz.models import Model, get_spec

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def cache_dir() -> Path:
  """Where jaxviz keeps trained and converted weights: `$JAXVIZ_CACHE`, else
  `$XDG_CACHE_HOME/jaxviz`, else `~/.cache/jaxviz`."""
  if os.environ.get("JAXVIZ_CACHE"):
    return Path(os.environ["JAXVIZ_CACHE"])
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "jaxviz"


def default_weights_path(model: str, dataset: str = "digits") -> Path:
  """The checkpoint `load_model(model)` reads when no weights are given."""
  if model == "lenet":
    return cache_dir() / f"lenet-{dataset}.msgpack"
  return cache_dir() / f"{model}-imagenet.msgpack"


def load_model(name: str, weights: str | os.PathLike | None = None, *,
               dataset: str = "digits", train_if_missing: bool = False) -> Model:
  """Loads model `name` ("lenet", "vgg16") with its weights.

  Args:
    name: registered model name.
    weights: a jaxviz checkpoint (`.msgpack`) or a Keras file (`.h5`, `.weights.h5`, `.keras`);
      None for the default: LeNet trained on `dataset`, or the converted Keras ImageNet weights.
    dataset: for LeNet's default weights, the data they were trained on.
    train_if_missing: train LeNet's default weights when they are not cached yet.
  """
  spec = get_spec(name)
  if weights in (None, ""):
    path = default_weights_path(name, dataset)
    if not path.exists():
      if name == "lenet" and train_if_missing:
        from jaxviz import train
        path = train.train_default(dataset)
      elif name == "lenet":
        raise JaxvizError(f"no trained LeNet at {path}. Run `jaxviz train "
                          f"--config.dataset={dataset}` first, or pass weights=PATH.")
      else:
        raise JaxvizError(f"no {name} weights at {path}. Run `jaxviz fetch-weights {name}` "
                          "(or convert a Keras file with `jaxviz convert IN OUT`) and pass "
                          "weights=PATH.")
    weights = path
  path = Path(weights)
  if path.name.endswith(KERAS_SUFFIXES):
    if not path.is_file():
      raise JaxvizError(f"weights file {str(path)!r} does not exist")
    from jaxviz.convert import keras
    params = keras.read_params(path, spec)
    return Model(spec, params, {"source": str(path)})
  params, metadata = checkpoint.load(path, spec)
  return Model(spec, params, metadata)
