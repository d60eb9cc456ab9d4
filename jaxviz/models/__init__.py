"""The models jaxviz knows, by name."""

from __future__ import annotations

from jaxviz.errors import unknown
from jaxviz.models.lenet import LENET
from jaxviz.models.spec import LayerSummary, Model, ModelSpec, format_summary
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


__all__ = ["MODELS", "LayerSummary", "Model", "ModelSpec", "format_summary", "get_spec"]
