"""Gradient attributions of a class logit or a filter to the input pixels: saliency, guided
backpropagation and the deconvnet, batched and compiled once per chunk shape.

All three take the gradient of a target with respect to the input image; they differ only in
the backward rule of the ReLUs (`jaxviz.views.relu_rules`):

    saliency    the true gradient; shown as max over channels of |gradient| (Simonyan et al.)
    guided      only positive gradients through positive inputs (Springenberg et al.)
    deconvnet   gradients rectified, input signs ignored (Zeiler & Fergus)

A target is a class logit (before the softmax) or one filter of a layer at its strongest
activation in the image (its maximum over positions; for a dense layer, the unit's value): as
Zeiler and Fergus project the strongest activation, with all others set to zero. Written for
one image and its K targets (one forward pass, one vjp per target, vmapped).

    result = attribution(model, x, "guided", top_k=1)             # the predicted class
    result = attribution(model, x, "deconvnet", layer="conv2d_2", filters="0-3")
    result.maps                                                    # [N, K, H, W, C]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import objectives, render
from jaxviz.errors import unknown
from jaxviz.models import layers as L
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.ranges import parse_indices
from jaxviz.views.batching import map_batches
from jaxviz.views.classes import class_targets
from jaxviz.views.relu_rules import RULES

METHODS = tuple(RULES)


class AttributionResult(NamedTuple):
  """Per image (N) and target (K).

  method: "saliency", "guided" or "deconvnet".
  layer: the target layer: the logits layer for classes, else the filters' layer.
  targets: `[N, K]` int: class indices, or filter indices of `layer`.
  maps: `[N, K, H, W, C]` float32 gradients in the model's input space.
  scores: `[N, K]` float32 the target values (logit, or the filter's largest activation).
  """
  method: str
  layer: str
  targets: np.ndarray
  maps: np.ndarray
  scores: np.ndarray


def check_method(method: str) -> str:
  if method not in RULES:
    raise unknown("attribution method", method, METHODS)
  return method


def attribution(model: Model, images: np.ndarray, method: str = "saliency", *,
                classes: str | Sequence[int] | None = None, top_k: int = 1,
                layer: str | None = None, filters: str | Sequence[int] = "0",
                batch_size: int = 32) -> AttributionResult:
  """Input gradients for images `[N, H, W, C]` (preprocessed).

  Targets: with `layer`, the given `filters` of that layer ("0-3", for every image), each at
  its strongest activation; without, class logits: `classes` ("3,5" for every image) or, when
  None, each image's `top_k` predicted classes, most likely first.
  """
  spec = model.spec
  rule = RULES[check_method(method)]
  target_layer, output, wanted, ranked = targets(spec, classes, top_k, layer, filters)
  plan = _Plan(L.Sequential(spec.layers, relu=rule), target_layer, output, len(wanted), ranked)
  images = np.asarray(images, np.float32)
  given = np.ascontiguousarray(np.broadcast_to(wanted, (len(images), len(wanted))))
  run = functools.partial(_attribution_batch, plan, model.params)
  maps, chosen, scores = map_batches(run, (images, given), batch_size)
  return AttributionResult(method, target_layer, chosen, maps, scores)


def targets(spec: ModelSpec, classes: str | Sequence[int] | None, top_k: int,
            layer: str | None, filters: str | Sequence[int]
            ) -> tuple[str, str, np.ndarray, bool]:
  """`(target layer, output, indices [K] int32, ranked)`: filters of `layer` when it is given,
  else class logits (given classes, or `ranked`: each image's `top_k` predictions)."""
  if layer:
    spec.layer(layer)
    wanted = np.asarray(parse_indices(filters, objectives.num_filters(spec, layer)), np.int32)
    return layer, "activation", wanted, False
  wanted, ranked = class_targets(spec, classes, top_k)
  return spec.logits_layer, "pre_activation", wanted, ranked


class _Plan(NamedTuple):
  module: L.Sequential
  layer: str
  output: str
  count: int
  top_k: bool


def _attribution_one(plan: _Plan, params, image, indices):
  """image `[H, W, C]`, indices `[K]` → maps `[K, H, W, C]`, indices `[K]`, scores `[K]`."""
  def values(x):  # [H, W, C] → [T]: logits, or each filter's largest activation
    y = plan.module.apply({"params": params}, x[None], upto=plan.layer, output=plan.output)[0]
    return jnp.max(y, axis=tuple(range(y.ndim - 1))) if y.ndim > 1 else y

  out, pullback = jax.vjp(values, image)
  if plan.top_k:
    indices = jax.lax.top_k(out, plan.count)[1]
  cotangents = jax.nn.one_hot(indices, out.shape[-1], dtype=out.dtype)
  maps = jax.vmap(lambda t: pullback(t)[0])(cotangents)
  return maps, indices.astype(jnp.int32), out[indices]


@functools.partial(jax.jit, static_argnums=0)
def _attribution_batch(plan: _Plan, params, images, indices):
  return jax.vmap(functools.partial(_attribution_one, plan, params))(images, indices)


def display(spec: ModelSpec, method: str, grad: np.ndarray) -> np.ndarray:
  """One map `[H, W, C]` → what is shown, uint8 `[H, W, 1 or 3]`.

  Saliency: max over channels of |gradient|, scaled by its maximum (grey, bright = salient).
  Guided backprop and deconvnet: the gradient as an image in display channel order, centred
  on grey and scaled by its spread, as the seeds show optimized images.
  """
  if method == "saliency":
    s = np.max(np.abs(grad), axis=-1)
    return render.to_uint8(s / max(float(s.max()), 1e-12))[..., None]
  return render.to_uint8(render.standardize(render.linear_display(spec, grad)))
