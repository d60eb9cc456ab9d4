"""Layer specs and the sequential Flax module every jaxviz model is built from.

A model is a tuple of frozen layer specs, each carrying its Keras name. `Sequential` applies
them in order and can stop at any named layer, so a forward pass never computes more than the
layer being visualized needs. Parameters live under the layer's name, as in Keras files:
`params["block1_conv1"]["kernel"]` is `[kh, kw, c_in, c_out]` (HWIO), `["bias"]` is `[c_out]`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, Union

import flax.linen as nn
import jax

ActivationName = Literal["relu", "softmax", "linear"]


def activate(x: jax.Array, name: ActivationName | None,
             relu: Callable[[jax.Array], jax.Array] = nn.relu) -> jax.Array:
  """Applies a named activation. `linear` and None are the identity; "relu" calls `relu`."""
  if name in (None, "linear"):
    return x
  if name == "relu":
    return relu(x)
  if name == "softmax":
    return nn.softmax(x, axis=-1)
  raise ValueError(f"unknown activation {name!r}; valid: relu, softmax, linear")


@dataclasses.dataclass(frozen=True)
class Conv:
  """2-D convolution, 'same' padding, stride 1; `activation` fused as in Keras' Conv2D."""
  name: str
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  activation: ActivationName | None = None
  kind = "Conv2D"


@dataclasses.dataclass(frozen=True)
class Dense:
  name: str
  features: int
  activation: ActivationName | None = None
  kind = "Dense"


@dataclasses.dataclass(frozen=True)
class Activation:
  name: str
  activation: ActivationName
  kind = "Activation"


@dataclasses.dataclass(frozen=True)
class MaxPool:
  name: str
  window: int = 2
  kind = "MaxPooling2D"


@dataclasses.dataclass(frozen=True)
class Flatten:
  """Flattens `[N, H, W, C]` in H, W, C order, as Keras does for channels-last data."""
  name: str
  kind = "Flatten"


LayerSpec = Union[Conv, Dense, Activation, MaxPool, Flatten]
Output = Literal["activation", "pre_activation", "input"]


# What one step of a walk does: `(layers, i, x)` → `(pre, post, consumed)`: layer i's output
# before its fused activation, the function that applies that activation, and how many layers
# the step covered (more than one when it fuses layers whose outputs nobody asked for).
Step = Callable[[tuple["LayerSpec", ...], int, jax.Array],
                tuple[jax.Array, Callable[[jax.Array], jax.Array], int]]


def walk(layers: tuple[LayerSpec, ...], x: jax.Array, step: Step, upto: str | None = None,
         output: Output = "activation", start: str | None = None) -> jax.Array:
  """The one walk over a model's layers, shared by `Sequential` (Flax) and the engine's
  forward pass (`jaxviz.forward`), which differ only in `step`.

  Starts at layer `start` (`x` is its input; None: the first), stops at `upto` and returns
  `output` there: "activation" (the layer's output, as Keras reports it), "pre_activation" (a
  fused activation left out) or "input" (what the layer receives). KeyError for a name not in
  `layers`.
  """
  names = [layer.name for layer in layers]
  if start is not None and start not in names:
    raise KeyError(start)
  if upto is not None and upto not in names:
    raise KeyError(upto)
  i = names.index(start) if start is not None else 0
  while i < len(layers):
    if names[i] == upto and output == "input":
      return x
    pre, post, consumed = step(layers, i, x)
    i += consumed
    stop = names[i - 1] == upto
    if stop and output == "pre_activation":
      return pre
    x = post(pre)
    if stop:
      return x
  if upto is not None:
    raise KeyError(upto)  # `upto` comes before `start`
  return x


def identity(x: jax.Array) -> jax.Array:
  return x


class Sequential(nn.Module):
  """Applies `layers` in order to images `[N, H, W, C]` (`walk` says where it starts and stops).

  Call with `upto=NAME` to stop at that layer, and `output=` to choose what is returned there:
  `"activation"` (the layer's output, as Keras reports it), `"pre_activation"` (a fused
  activation left out; same as "activation" for layers without one) or `"input"` (what the
  layer receives). With `start=NAME`, `x` is the input of layer NAME and the layers before
  it are skipped (e.g. from a conv layer's activations on to the logits).

  `relu` is the function every ReLU (fused or an Activation layer) applies; the attribution
  views swap in ReLUs with other backward rules (`jaxviz.views.relu_rules`).
  """
  layers: tuple[LayerSpec, ...]
  relu: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array, upto: str | None = None,
               output: Output = "activation", start: str | None = None) -> jax.Array:
    return walk(self.layers, x, self._step, upto, output, start)

  def _step(self, layers: tuple[LayerSpec, ...], i: int, x: jax.Array):
    layer = layers[i]
    fused = None
    if isinstance(layer, Conv):
      x = nn.Conv(layer.features, layer.kernel_size, padding="SAME", name=layer.name)(x)
      fused = layer.activation
    elif isinstance(layer, Dense):
      x = nn.Dense(layer.features, name=layer.name)(x)
      fused = layer.activation
    elif isinstance(layer, Activation):
      x = activate(x, layer.activation, self.relu)
    elif isinstance(layer, MaxPool):
      w = layer.window
      x = nn.max_pool(x, (w, w), strides=(w, w), padding="VALID")
    elif isinstance(layer, Flatten):
      x = x.reshape((x.shape[0], -1))
    else:
      raise TypeError(f"unknown layer spec {layer!r}")
    return x, lambda y: activate(y, fused, self.relu), 1


def conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'same' stride-1 convolution of `x` `[N, H, W, Cin]` with `kernel` `[kh, kw, Cin, Cout]`."""
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(1, 1), padding="SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
