"""jaxviz: see what convolutional networks learn, with one compiled JAX program per layer."""

from jaxviz.engine import AscentSettings, FilterEngine, FilterResult
from jaxviz.errors import JaxvizError
from jaxviz.images import load_images
from jaxviz.loading import load_model
from jaxviz.models import Model, ModelSpec, get_spec
from jaxviz.provision import load_or_train
from jaxviz.views.attribution import attribution
from jaxviz.views.classes import maximize_classes
from jaxviz.views.feature_maps import feature_maps
from jaxviz.views.gradcam import gradcam
from jaxviz.views.weights import filter_weights

__version__ = "0.1.0"

__all__ = [
    "AscentSettings", "FilterEngine", "FilterResult", "JaxvizError", "Model", "ModelSpec",
    "attribution", "feature_maps", "filter_weights", "get_spec", "gradcam", "load_images",
    "load_model", "load_or_train", "maximize_classes",
]
