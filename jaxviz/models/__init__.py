"""The models jaxviz knows, by name."""

from __future__ import annotations

from jaxviz.errors import unknown
from jaxviz.models.lenet import LENET
from jaxviz.models.spec import LayerSummary, Model, ModelSpec, format_summary
from jaxviz.models import vgg16
from jaxviz.models.vgg16 import VGG16

MODELS: dict[str, ModelSpec] = {
    "lenet": LENET,
    "vgg16": VGG16,
}


def get_spec(name: str) -> ModelSpec:
  """The spec registered as `name`; a clear error listing the valid names otherwise."""
  try:
    return MODELS[name]
  except KeyError:
    raise unknown("model", name, sorted(MODELS)) from None


def spec_for_layers(spec: ModelSpec, layer_names) -> ModelSpec:
  """The variant of `spec` whose weighted layers are `layer_names`.

  VGG16 comes with or without its classifier top, both named "vgg16": weights holding `fc1`,
  `fc2` or `predictions` get the spec with the top (224×224 input, 1000 classes), others the
  convolutional base (any input size). Other models have one variant: `spec` itself.
  """
  if spec.name == "vgg16":
    return vgg16.variant(layer_names)
  return spec


__all__ = ["MODELS", "LayerSummary", "Model", "ModelSpec", "format_summary", "get_spec",
           "spec_for_layers"]
