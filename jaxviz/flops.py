"""How much work a visualization job is, counted for the plain algorithm.

The plain algorithm runs the full forward pass up to the target layer (all output channels of
every conv, the target's included) and backpropagates to the image, once per image and step.
For a conv with input `[H, W, Cin]`, `Cout` filters and a `kh×kw` kernel that is
`2·H·W·Cin·Cout·kh·kw` FLOP forward and as much again backward to its input; a dense layer
(only reached when the target is one) counts `2·Din·Dout` each way. Pools, activations and the
optimizer update are not counted. Work an engine avoids (channels of the target it never
computes, weight gradients it never forms) is still counted, so avoiding it shows up as a
higher effective rate.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class LayerWork:
  """One weighted layer on the way to the target.

  Attributes:
    name: Keras layer name.
    input_shape: `(H, W, Cin)` for a conv, `(Din,)` for a dense layer; one image.
    features: output channels (conv) or units (dense).
    kernel_size: `(kh, kw)`; `(1, 1)` for a dense layer.
    forward_flop: FLOP of the forward pass for one image.
  """
  name: str
  input_shape: tuple[int, ...]
  features: int
  kernel_size: tuple[int, int]
  forward_flop: int


def layer_work(spec: ModelSpec, layer: str, size: int | None = None) -> list[LayerWork]:
  """The weighted layers from the input up to and including `layer`, with their forward FLOP
  for one `size`×`size` image (None: the model's default size)."""
  spec.layer(layer)
  x = jax.ShapeDtypeStruct((1, *spec.input_shape_for(size)), jnp.float32)
  variables = jax.eval_shape(spec.module.init, jax.random.key(0), x)
  work = []
  for spec_layer in spec.layers:
    if isinstance(spec_layer, (L.Conv, L.Dense)):
      apply = functools.partial(spec.module.apply, upto=spec_layer.name, output="input")
      shape = tuple(int(d) for d in jax.eval_shape(apply, variables, x).shape[1:])
      if isinstance(spec_layer, L.Conv):
        kh, kw = spec_layer.kernel_size
        h, w, cin = shape
        flop = 2 * h * w * cin * spec_layer.features * kh * kw
      else:
        kh, kw = 1, 1
        flop = 2 * shape[-1] * spec_layer.features
      work.append(LayerWork(spec_layer.name, shape, spec_layer.features, (kh, kw), flop))
    if spec_layer.name == layer:
      break
  return work


def step_flop(spec: ModelSpec, layer: str, size: int | None = None) -> int:
  """FLOP of one ascent step for one image: forward to `layer` plus backward to the image."""
  return 2 * sum(w.forward_flop for w in layer_work(spec, layer, size))


def job_flop(spec: ModelSpec, layer: str, size: int | None, filters: int, steps: int) -> int:
  """FLOP of a whole job: `filters` images, each ascending for `steps` steps."""
  return step_flop(spec, layer, size) * filters * steps
