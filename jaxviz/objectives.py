"""What is maximized: the mean activation of one filter (channel) of a layer, for one image.

Objectives are written for a single image `[H, W, C]` and a filter index; the engine vmaps them.
Summing the per-image objectives over a batch and taking one gradient gives each image its own
gradient, because no image's objective depends on another image.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxviz import forward
from jaxviz.errors import JaxvizError
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec, Params

# (params, image [H, W, C], filter index) -> scalar
Objective = Callable[[Params, jax.Array, jax.Array], jax.Array]


def num_filters(spec: ModelSpec, layer: str) -> int:
  """How many filters (output channels or units) `layer` has."""
  spec.layer(layer)
  x = jax.ShapeDtypeStruct((1, *spec.input_shape), jnp.float32)
  out, _ = jax.eval_shape(
      functools.partial(spec.module.init_with_output, upto=layer), jax.random.key(0), x)
  return int(out.shape[-1])


def channel_mean(spec: ModelSpec, layer: str, *, exclude_border: int = 0,
                 before_relu: bool = False, channel_only: bool = True,
                 image_only_grad: bool = True) -> Objective:
  """Mean activation of filter k of `layer` over its spatial positions.

  Args:
    exclude_border: activation pixels left out at each edge (they see padded input).
    before_relu: for a conv with a fused ReLU, maximize the ReLU's input.
    channel_only: when `layer` is a conv, compute only channel k of it from the layer's input
      with the kernel slice `[..., k]` instead of all its channels. Same result, less work.
    image_only_grad: run the forward pass of `jaxviz.forward`, whose backward rules compute
      only the gradient with respect to the image, with forward-speed kernels. Same result.
  """
  target = spec.layer(layer)
  if image_only_grad:
    def features(params, x, output):
      return forward.forward(spec, params, x, layer, output)
  else:
    def features(params, x, output):
      return spec.module.apply({"params": params}, x, upto=layer, output=output)
  output = "pre_activation" if before_relu else "activation"
  fused = getattr(target, "activation", None)
  if exclude_border < 0:
    raise JaxvizError(f"exclude_border must be ≥ 0, got {exclude_border}")

  def crop(y):  # y: [H', W'] activations of one channel
    b = exclude_border
    if b == 0:
      return y
    if 2 * b >= min(y.shape[:2]):
      raise JaxvizError(f"exclude_border={b} leaves nothing of the {y.shape[0]}×{y.shape[1]} "
                        f"activation map of {layer!r}; use a value below {min(y.shape) // 2}")
    return y[b:-b, b:-b]

  if channel_only and isinstance(target, L.Conv):
    def objective(params, image, k):
      h = features(params, image[None], "input")
      kernel = jax.lax.dynamic_slice_in_dim(params[layer]["kernel"], k, 1, axis=3)
      bias = jax.lax.dynamic_slice_in_dim(params[layer]["bias"], k, 1)
      y = forward.conv_layer(h, target, kernel, bias)[0, :, :, 0]
      if not before_relu:
        y = L.activate(y, fused)
      return jnp.mean(crop(y))
  else:
    def objective(params, image, k):
      y = features(params, image[None], output)[0]
      y = jnp.take(y, k, axis=-1)
      return jnp.mean(crop(y)) if y.ndim == 2 else y

  return objective
