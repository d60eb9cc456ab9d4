"""`load_model`: a model spec plus weights from a jaxviz checkpoint or a Keras file."""

from __future__ import annotations

import os
from pathlib import Path

from jaxviz import checkpoint
from jaxviz.errors import JaxvizError
from jaxviz.models import Model, ModelSpec, get_spec

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def cache_dir() -> Path:
  """Where jaxviz keeps trained and converted weights: `$JAXVIZ_CACHE`, else
  `$XDG_CACHE_HOME/jaxviz`, else `~/.cache/jaxviz`."""
  if os.environ.get("JAXVIZ_CACHE"):
    return Path(os.environ["JAXVIZ_CACHE"])
  base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(base) / "jaxviz"


def default_weights_path(model: str, dataset: str = "digits", top: bool = False) -> Path:
  """The checkpoint `load_model(model)` reads when no weights are given.

  For VGG16, `top` picks the checkpoint with the classifier top (`jaxviz fetch-weights vgg16
  --top` writes it) instead of the convolutional base.
  """
  if model == "lenet":
    return cache_dir() / f"lenet-{dataset}.msgpack"
  return cache_dir() / f"{model}-imagenet{'-top' if top else ''}.msgpack"


def spec_for_layers(spec: ModelSpec, layer_names) -> ModelSpec:
  """The variant of `spec` whose weighted layers are `layer_names`.

  VGG16 comes with or without its classifier top, both named "vgg16": weights holding `fc1`,
  `fc2` or `predictions` get the spec with the top (224×224 input, 1000 classes), others the
  convolutional base (any input size). Other models have one variant: `spec` itself.
  """
  if spec.name == "vgg16":
    from jaxviz.models import vgg16
    return vgg16.variant(layer_names)
  return spec


def load_model(name: str, weights: str | os.PathLike | None = None, *,
               dataset: str = "digits", train_if_missing: bool = False) -> Model:
  """Loads model `name` ("lenet", "vgg16") with its weights.

  Args:
    name: registered model name.
    weights: a jaxviz checkpoint (`.msgpack`) or a Keras file (`.h5`, `.weights.h5`, `.keras`);
      None for the default: LeNet trained on `dataset`, or the converted Keras ImageNet weights.
    dataset: for LeNet's default weights, the data they were trained on.
    train_if_missing: train LeNet's default weights when they are not cached yet.

  For "vgg16" the weights decide the variant: a file or checkpoint holding the classifier top
  (`fc1`, `fc2`, `predictions`) gives the model with it, others the convolutional base (see
  `spec_for_layers`). With no weights given, the converted base is read, or the converted model
  with its top when only that one is cached. A Keras file holding a VGG16 inside a larger model
  gives that VGG16, the mapping of its layers printed to stderr (see `jaxviz.convert.keras`).
  """
  spec = get_spec(name)
  if weights in (None, ""):
    path = default_weights_path(name, dataset)
    if name == "vgg16" and not path.exists() and default_weights_path(name, top=True).exists():
      path = default_weights_path(name, top=True)
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
    checkpoint.require_file(path, "weights file")
    from jaxviz.convert import keras
    result = keras.read(path, spec)
    keras.report_mapping(str(path), result.spec, result.mapping, result.mapped_by)
    metadata = {"source": str(path), "layout": result.layout}
    if result.mapping:
      metadata["mapping"] = keras.format_mapping(result.mapping)
    return Model(result.spec, result.params, metadata)
  ckpt = checkpoint.read(path)
  spec = spec_for_layers(spec, ckpt.params)  # VGG16 has two variants: see spec_for_layers.
  checkpoint.check(ckpt, spec, str(path))
  return Model(spec, ckpt.params, ckpt.metadata)
