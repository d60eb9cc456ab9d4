"""What a model is (`ModelSpec`: layers, input, pre/de-processing) and a loaded model (`Model`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.errors import JaxvizError, unknown
from jaxviz.models import layers as L

Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A CNN architecture with its Keras layer names and its input conventions.

  Attributes:
    name: registry name, e.g. "lenet".
    layers: the layer specs in order.
    input_shape: default `(H, W, C)` input.
    fixed_input_size: True when dense layers pin the input size.
    num_classes: outputs of the classifier, or 0 for a model without a top.
    preprocess: pixels `[..., H, W, C]` in [0, 255] (RGB or grey) → model input, as Keras'
      `preprocess_input` does for this model.
    to_display: model input `[..., H, W, C]` → display values (RGB or grey, any scale; the
      gallery normalizes them).
    logits_layer: the layer whose pre-activation output is the class logits.
  """
  name: str
  layers: tuple[L.LayerSpec, ...]
  input_shape: tuple[int, int, int]
  fixed_input_size: bool
  num_classes: int
  preprocess: Callable[[np.ndarray], np.ndarray]
  to_display: Callable[[np.ndarray], np.ndarray]
  logits_layer: str | None = None

  @property
  def module(self) -> L.Sequential:
    return L.Sequential(self.layers)

  @property
  def layer_names(self) -> list[str]:
    return [layer.name for layer in self.layers]

  @property
  def conv_layer_names(self) -> list[str]:
    return [layer.name for layer in self.layers if isinstance(layer, L.Conv)]

  def layer(self, name: str) -> L.LayerSpec:
    """The spec of layer `name`; a clear error listing the valid names otherwise."""
    for layer in self.layers:
      if layer.name == name:
        return layer
    raise unknown(f"layer of model {self.name!r}", name, self.layer_names)

  def input_shape_for(self, size: int | None) -> tuple[int, int, int]:
    """`(H, W, C)` for a square input of `size` pixels (None or 0: the default size)."""
    h, w, c = self.input_shape
    if not size or (size == h and size == w):
      return (h, w, c)
    if self.fixed_input_size:
      raise JaxvizError(
          f"model {self.name!r} takes {h}×{w} inputs only (its dense layers fix the size); "
          f"got size {size}. Use size={h}.")
    if size <= 0:
      raise JaxvizError(f"size must be a positive number of pixels, got {size}")
    return (size, size, c)

  def init_params(self, key: jax.Array, size: int | None = None) -> Params:
    """Randomly initialized parameters (Flax defaults), for tests and training."""
    shape = (1, *self.input_shape_for(size))
    return jax.jit(self.module.init)(key, jnp.zeros(shape, jnp.float32))["params"]

  def output_shape(self, layer: str, size: int | None = None,
                   output: L.Output = "activation") -> tuple[int, ...]:
    """Shape of `layer`'s output (or input) for one image: `(H', W', C')` or `(D,)`.

    The first call for a size traces the model once, layer by layer, and keeps every layer's
    shapes: the engine plans every run's chunks with them, and tracing the model up to each
    layer in turn would cost a trace per layer (tenths of a second at VGG16's depth).
    """
    self.layer(layer)
    known = self.__dict__.setdefault("_output_shapes", {})  # a frozen dataclass's own cache
    if size not in known:
      known[size] = self._layer_shapes(size)
    inputs, outputs = known[size]
    return inputs[layer] if output == "input" else outputs[layer]

  def _layer_shapes(self, size: int | None) -> tuple[dict[str, tuple[int, ...]],
                                                     dict[str, tuple[int, ...]]]:
    """`({layer: input shape}, {layer: output shape})` for one image of `size`: one trace.
    A fused activation keeps the shape, so "pre_activation" shapes are the outputs'."""
    def walk_all(key, x):
      outputs = []
      for name in self.layer_names:
        x, _ = self.module.init_with_output(key, x, upto=name, start=name)
        outputs.append(x)
      return outputs

    x = jax.ShapeDtypeStruct((1, *self.input_shape_for(size)), jnp.float32)
    outs = [tuple(o.shape[1:]) for o in jax.eval_shape(walk_all, jax.random.key(0), x)]
    ins = [tuple(x.shape[1:]), *outs[:-1]]
    return dict(zip(self.layer_names, ins)), dict(zip(self.layer_names, outs))

  @functools.cached_property
  def pixel_map(self) -> tuple[np.ndarray, np.ndarray]:
    """`preprocess` as the affine map it is: `(A [C, C], b [C])` with input = pixels @ A + b.

    Read off `preprocess` by applying it to the zero pixel and the unit pixels, so any
    channel-wise affine preprocessing (scaling, mean subtraction, channel reordering) works.
    """
    c = self.input_shape[-1]
    basis = np.concatenate([np.zeros((1, c)), np.eye(c)]).reshape(c + 1, 1, 1, c)
    out = np.asarray(self.preprocess(basis.astype(np.float32)), np.float64).reshape(c + 1, c)
    return (out[1:] - out[0]).astype(np.float32), out[0].astype(np.float32)

  def pixels_to_input(self, pixels: jax.Array) -> jax.Array:
    """`preprocess` for traced arrays: pixels `[..., H, W, C]` (0–255 scale) → model input."""
    a, b = self.pixel_map
    return pixels @ jnp.asarray(a) + jnp.asarray(b)

  def input_to_pixels(self, x: jax.Array) -> jax.Array:
    """The inverse of `pixels_to_input`: model input `[..., H, W, C]` → pixels (0–255 scale)."""
    a, b = self.pixel_map
    return (x - jnp.asarray(b)) @ jnp.asarray(np.linalg.inv(a))

  @property
  def neutral_pixel(self) -> np.ndarray:
    """`[C]` the pixel the model reads as input 0: ImageNet's mean colour for VGG16, black
    (the background) for LeNet. Decay and clipping pull towards it, transforms fill with it."""
    a, b = self.pixel_map
    return np.linalg.solve(a.T.astype(np.float64), -b.astype(np.float64)).astype(np.float32) + 0.0

  def param_shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
    """`{layer: {"kernel": shape, "bias": shape}}` for every layer with weights."""
    shape = (1, *self.input_shape)
    tree = jax.eval_shape(self.module.init, jax.random.key(0), jnp.zeros(shape, jnp.float32))
    return jax.tree_util.tree_map(lambda a: tuple(a.shape), tree["params"])


@dataclasses.dataclass(frozen=True)
class LayerSummary:
  name: str
  kind: str
  output_shape: tuple[int | None, ...]
  params: int


class Model:
  """A model spec with its parameters: the object `jaxviz.load_model` returns."""

  def __init__(self, spec: ModelSpec, params: Params, metadata: dict | None = None):
    self.spec = spec
    self.params = params
    self.metadata = dict(metadata or {})

  @property
  def name(self) -> str:
    return self.spec.name

  @property
  def layers(self) -> list[str]:
    """The layer names in order, as Keras names them."""
    return self.spec.layer_names

  def features(self, x: jax.Array | np.ndarray, layer: str,
               output: L.Output = "activation") -> jax.Array:
    """Activations of `layer` for images `x` `[N, H, W, C]` float32, already preprocessed.

    Returns `[N, H', W', C']` for conv and pool layers, `[N, D]` for dense ones.
    """
    self.spec.layer(layer)
    return _apply(self.spec.module, self.params, jnp.asarray(x, jnp.float32), layer, output)

  def summary(self, size: int | None = None) -> list[LayerSummary]:
    """One row per layer, like Keras' `model.summary()`."""
    return summarize(self.spec, size)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _apply(module, params, x, layer, output):
  return module.apply({"params": params}, x, upto=layer, output=output)


def summarize(spec: ModelSpec, size: int | None = None) -> list[LayerSummary]:
  """Name, type, output shape and parameter count of every layer, from shapes alone."""
  shapes = spec.param_shapes()
  rows = []
  for layer in spec.layers:
    count = sum(int(np.prod(shape)) for shape in shapes.get(layer.name, {}).values())
    rows.append(LayerSummary(layer.name, layer.kind, (None, *spec.output_shape(layer.name, size)),
                             count))
  return rows


def format_summary(spec: ModelSpec, size: int | None = None) -> str:
  """A text table of `summarize(spec, size)`."""
  rows = summarize(spec, size)
  lines = [f'Model: "{spec.name}"', f"{'Layer (type)':<34}{'Output Shape':<24}{'Param #':>12}",
           "=" * 70]
  for r in rows:
    lines.append(f"{r.name + ' (' + r.kind + ')':<34}{str(r.output_shape):<24}{r.params:>12,}")
  lines += ["=" * 70, f"Total params: {sum(r.params for r in rows):,}"]
  return "\n".join(lines)
