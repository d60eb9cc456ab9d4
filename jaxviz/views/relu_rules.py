"""ReLUs with the backward rules of the attribution methods, as `jax.custom_vjp` functions.

All three compute `max(x, 0)` forward; they differ only in what flows back for an upstream
gradient `g` at input `x` (elementwise):

    plain      g · [x > 0]              the true gradient (saliency, Grad-CAM)
    guided     g · [x > 0] · [g > 0]    guided backpropagation (Springenberg et al. 2015)
    deconvnet  g · [g > 0]              the deconvnet's rectification (Zeiler & Fergus 2014)

A model runs with one of them by building its module as `Sequential(spec.layers, relu=RULE)`.
Max pooling needs no rule of its own: its gradient already routes each value back to the
position that won the max, which is the deconvnet's "switches".
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
  """`max(x, 0)`; backward passes only positive gradients where the input was positive."""
  return jnp.maximum(x, 0)


def _guided_forward(x):
  return jnp.maximum(x, 0), x


def _guided_backward(x, g):
  return (g * ((x > 0) & (g > 0)).astype(g.dtype),)


guided_relu.defvjp(_guided_forward, _guided_backward)


@jax.custom_vjp
def deconvnet_relu(x: jax.Array) -> jax.Array:
  """`max(x, 0)`; backward rectifies the gradient itself and ignores the input's sign."""
  return jnp.maximum(x, 0)


def _deconvnet_forward(x):
  return jnp.maximum(x, 0), None


def _deconvnet_backward(_, g):
  return (jnp.maximum(g, 0),)


deconvnet_relu.defvjp(_deconvnet_forward, _deconvnet_backward)


# Attribution method → the ReLU its backward pass uses.
RULES = {
    "saliency": nn.relu,
    "guided": guided_relu,
    "deconvnet": deconvnet_relu,
}
