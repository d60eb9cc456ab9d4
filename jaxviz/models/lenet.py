"""LeNet for 28×28 grey digits, layer for layer as in the seed tutorial.

Conv 20@5×5 same → ReLU → MaxPool 2 → Conv 50@5×5 same → ReLU → MaxPool 2 → Dense 500 → ReLU →
Dense 10 → softmax. Activations are separate layers, so `conv2d_1` and `conv2d_2` report their
output before the ReLU, as the seed's Keras model does.

Input: `[N, 28, 28, 1]` float32, ink intensity in [0, 1] (0 is the background).
"""

from __future__ import annotations

import numpy as np

from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec

LENET_LAYERS = (
    L.Conv("conv2d_1", 20, (5, 5)),
    L.Activation("activation_1", "relu"),
    L.MaxPool("max_pooling2d_1"),
    L.Conv("conv2d_2", 50, (5, 5)),
    L.Activation("activation_2", "relu"),
    L.MaxPool("max_pooling2d_2"),
    L.Flatten("flatten_1"),
    L.Dense("dense_1", 500),
    L.Activation("activation_3", "relu"),
    L.Dense("dense_2", 10),
    L.Activation("activation_4", "softmax"),
)


def preprocess(pixels: np.ndarray) -> np.ndarray:
  """Grey pixels in [0, 255] `[..., H, W, 1]` → model input in [0, 1]."""
  return np.asarray(pixels, np.float32) / 255.0


def to_display(x: np.ndarray) -> np.ndarray:
  """Model input `[..., H, W, 1]` → grey pixels on the 0–255 scale (not clipped)."""
  return np.asarray(x, np.float32) * 255.0


LENET = ModelSpec(
    name="lenet",
    layers=LENET_LAYERS,
    input_shape=(28, 28, 1),
    fixed_input_size=True,
    num_classes=10,
    preprocess=preprocess,
    to_display=to_display,
    logits_layer="dense_2",
)
