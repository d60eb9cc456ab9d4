"""The models jaxviz knows, by name."""

from __future__ import annotations

from jaxviz.errors import unknown
from jaxviz.models.lenet import LENET
from jaxviz.models.spec import LayerSummary, Model, ModelSpec, format_summary

MODELS: dict[str, ModelSpec] = {
    "lenet": LENET,
}


def get_spec(name: str) -> ModelSpec:
  """The spec registered as `name`; a clear error listing the valid names otherwise."""
  try:
    return MODELS[name]
  except KeyError:
    raise unknown("model", name, sorted(MODELS)) from None


__all__ = ["MODELS", "LayerSummary", "Model", "ModelSpec", "format_summary", "get_spec"]
