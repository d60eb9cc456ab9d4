"""What is maximized: the mean activation of one filter (channel) of a layer, for one image.

Objectives are written for a single image `[H, W, C]` and a filter index; the engine vmaps them.
Summing the per-image objectives over a batch and taking one gradient gives each image its own
gradient, because no image's objective depends on another image.
"""

from __future__ import annotations

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
  return int(spec.output_shape(layer)[-1])


def channel_mean(spec: ModelSpec, layer: str, *, exclude_border: int = 0,
                 before_relu: bool = False, channel_only: bool = True,
                 image_only_grad: bool = True) -> Objective:
  """Mean activation of filter k_b of `layer` for each image b: `(params, images [B, H, W, C],
  ks [B]) → [B]`. Image b's value depends on image b alone.

  Args:
    exclude_border: activation pixels left out at each edge (they see padded input).
    before_relu: for a conv with a fused ReLU, maximize the ReLU's input.
    channel_only: when `layer` is a conv, compute only the maximized channels from the layer's
      input instead of all of them: image b with kernel slice k_b. Same result, less work.
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

  def spatial_mean(y):  # y: [B, H', W'] activations of each image's channel
    b = exclude_border
    if b and 2 * b >= min(y.shape[1:3]):
      raise JaxvizError(f"exclude_border={b} leaves nothing of the {y.shape[1]}×{y.shape[2]} "
                        f"activation map of {layer!r}; use a value below {min(y.shape[1:3]) // 2}")
    return jnp.mean(y[:, b:y.shape[1] - b, b:y.shape[2] - b], axis=(1, 2))

  def finish(y):
    return spatial_mean(y if before_relu else L.activate(y, fused))

  if channel_only and isinstance(target, L.Conv):
    def one(params, image, k):
      h = features(params, image[None], "input")
      kernel = jax.lax.dynamic_slice_in_dim(params[layer]["kernel"], k, 1, axis=3)
      bias = jax.lax.dynamic_slice_in_dim(params[layer]["bias"], k, 1)
      return forward.conv_layer(h, target, kernel, bias)[0, :, :, 0]

    def objective(params, images, ks):
      return finish(jax.vmap(one, in_axes=(None, 0, 0))(params, images, ks))
  else:
    def objective(params, images, ks):
      y = features(params, images, output)
      y = jnp.take_along_axis(y, ks.reshape((-1,) + (1,) * (y.ndim - 1)), axis=-1)[..., 0]
      return spatial_mean(y) if y.ndim == 3 else y

  return objective
