"""`load_model`: a model spec plus weights from a jaxviz checkpoint or a Keras file."""

from __future__ import annotations

import os
from pathlib import Path

from jaxviz import checkpoint
from jaxviz.cache import default_weights_path
from jaxviz.convert import keras
from jaxviz.errors import JaxvizError
from jaxviz.models import Model, get_spec, spec_for_layers

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


def default_weights(name: str, dataset: str = "digits") -> Path:
  """The cached checkpoint `load_model(name)` reads: LeNet trained on `dataset`; for VGG16 the
  converted base, or the converted model with its top when only that one is cached. The path
  may not exist yet."""
  path = default_weights_path(name, dataset)
  if name == "vgg16" and not path.exists() and default_weights_path(name, top=True).exists():
    path = default_weights_path(name, top=True)
  return path


def load_model(name: str, weights: str | os.PathLike | None = None, *,
               dataset: str = "digits") -> Model:
  """Loads model `name` ("lenet", "vgg16") with its weights.

  Args:
    name: registered model name.
    weights: a jaxviz checkpoint (`.msgpack`) or a Keras file (`.h5`, `.weights.h5`, `.keras`);
      None for the cached default (`default_weights`). `jaxviz.load_or_train` trains LeNet's
      default first when it is missing.
    dataset: for LeNet's default weights, the data they were trained on.

  For "vgg16" the weights decide the variant: a file or checkpoint holding the classifier top
  (`fc1`, `fc2`, `predictions`) gives the model with it, others the convolutional base (see
  `jaxviz.models.spec_for_layers`). A Keras file holding a VGG16 inside a larger model gives
  that VGG16, the mapping of its layers printed to stderr (see `jaxviz.convert.keras`).
  """
  spec = get_spec(name)
  if weights in (None, ""):
    weights = default_weights(name, dataset)
    if not weights.exists():
      if name == "lenet":
        raise JaxvizError(f"no trained LeNet at {weights}. Run `jaxviz train "
                          f"--config.dataset={dataset}` first, or pass weights=PATH.")
      raise JaxvizError(f"no {name} weights at {weights}. Run `jaxviz fetch-weights {name}` "
                        "(or convert a Keras file with `jaxviz convert IN OUT`) and pass "
                        "weights=PATH.")
  path = Path(weights)
  if path.name.endswith(KERAS_SUFFIXES):
    checkpoint.require_file(path, "weights file")
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
