"""VGG16 as `keras.applications.VGG16` builds it, with Keras' layer names.

Five blocks of 3×3 'same' convolutions with fused ReLU (so `block1_conv1` … `block5_conv3`
report their output after the ReLU, as Keras does), each closed by a 2×2 max pool
(`block1_pool` … `block5_pool`). The top adds `flatten`, `fc1` and `fc2` (4096, ReLU) and
`predictions` (1000 ImageNet classes, softmax; its pre-activation output is the logits).

Two specs share the name "vgg16", so a checkpoint of either is a "vgg16" checkpoint:
  - `VGG16`: without the top; any input size, default 224×224. This is the registered spec.
  - `VGG16_TOP`: with the top; 224×224 only, since `fc1` takes the 7×7×512 `block5_pool`.
`variant(layer_names)` picks the one a weights file holds: the top when it has any of `fc1`,
`fc2`, `predictions`, else the convolutional base.

Input: `[N, H, W, 3]` float32 as Keras' `vgg16.preprocess_input` returns it ("caffe" mode):
BGR channels, ImageNet mean subtracted, no scaling.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec

# The ImageNet mean pixel in BGR order, as Keras' "caffe" preprocessing subtracts it.
MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)

TOP_LAYER_NAMES = ("fc1", "fc2", "predictions")


def _block(index: int, features: int, convs: int) -> tuple[L.LayerSpec, ...]:
  return (*(L.Conv(f"block{index}_conv{i}", features, (3, 3), activation="relu")
            for i in range(1, convs + 1)),
          L.MaxPool(f"block{index}_pool"))


BASE_LAYERS = (*_block(1, 64, 2), *_block(2, 128, 2), *_block(3, 256, 3), *_block(4, 512, 3),
               *_block(5, 512, 3))

TOP_LAYERS = (
    L.Flatten("flatten"),
    L.Dense("fc1", 4096, activation="relu"),
    L.Dense("fc2", 4096, activation="relu"),
    L.Dense("predictions", 1000, activation="softmax"),
)


def preprocess(pixels: np.ndarray) -> np.ndarray:
  """RGB pixels in [0, 255] `[..., H, W, 3]` → model input `[..., H, W, 3]` float32 (BGR,
  mean-subtracted), equal to `keras.applications.vgg16.preprocess_input`."""
  x = np.asarray(pixels, np.float32)
  return x[..., ::-1] - MEAN_BGR


def to_display(x: np.ndarray) -> np.ndarray:
  """Model input `[..., H, W, 3]` → RGB pixels on the [0, 255] scale (not clipped): the mean
  added back and the channels flipped to RGB, so images show in true colour."""
  return (np.asarray(x, np.float32) + MEAN_BGR)[..., ::-1]


VGG16 = ModelSpec(
    name="vgg16",
    layers=BASE_LAYERS,
    input_shape=(224, 224, 3),
    fixed_input_size=False,
    num_classes=0,
    preprocess=preprocess,
    to_display=to_display,
)

VGG16_TOP = ModelSpec(
    name="vgg16",
    layers=BASE_LAYERS + TOP_LAYERS,
    input_shape=(224, 224, 3),
    fixed_input_size=True,
    num_classes=1000,
    preprocess=preprocess,
    to_display=to_display,
    logits_layer="predictions",
)


def variant(layer_names: Iterable[str]) -> ModelSpec:
  """`VGG16_TOP` when `layer_names` (the weighted layers a file holds) include a top layer,
  else `VGG16`."""
  return VGG16_TOP if set(layer_names) & set(TOP_LAYER_NAMES) else VGG16
