"""jaxviz: see what convolutional networks learn, with one compiled JAX program per layer."""

from jaxviz.errors import JaxvizError
from jaxviz.loading import load_model
from jaxviz.models import Model, ModelSpec, get_spec

__version__ = "0.1.0"

__all__ = ["JaxvizError", "Model", "ModelSpec", "get_spec", "load_model"]
