"""What is maximized, as a small algebra (after Lucid's `optvis/objectives.py`).

An `Objective` is a weighted sum of terms, built with `+`, `-` and scalar `*`:

    channel(spec, "block5_conv1") - 0.01 * l2() + Hyper("diversity_weight") * diversity(spec, L)

A weight is a number or `Hyper(name)`, a hyperparameter read from the traced `hp` at run time
(so other strengths compile nothing). Each term sees one filter's D images through a `Probe`
(the images, and the model's activations computed once per layer) and gives two values per
image `[D]`: the one whose gradient is followed, and the true one that is reported. They differ
only in ReLU rescue: a post-ReLU unit whose map is zero everywhere has no gradient. With the
hyperparameter `rescue_slope` at 0, until some of the map turns positive the peak of its
pre-activation map is followed instead (in the spirit of Lucid's redirected ReLU, applied at the
target: it lifts the place closest to firing). With `rescue_slope` s > 0 the followed map is
`relu(y) + s · min(y, 0)` throughout, a leaky ReLU: every place below zero keeps pulling itself
up, so a unit that fires in one place under one transform and nowhere under the next still has
a steady gradient. The reported activation is the first unit term's true value, unweighted.

Terms never mix filters: a filter's value depends on its own images only, so summing over a
batch and taking one gradient gives each image its own gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import forward, regularizers
from jaxviz.errors import JaxvizError
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec, Params

Hyperparameters = Mapping[str, jax.Array]


def num_filters(spec: ModelSpec, layer: str) -> int:
  """How many filters (output channels or units) `layer` has."""
  return int(spec.output_shape(layer)[-1])


class Probe:
  """One filter's D images and what the model makes of them, each layer computed once.

  Attributes:
    images: `[D, H, W, C]` model input (after the random transforms).
    offsets: `[D, H, W, C]` the untransformed pixels minus the neutral pixel, over 255: what
      the penalties measure, on the same scale for every model.
    unit: the filter index (scalar int, traced).
  """

  def __init__(self, spec: ModelSpec, params: Params, images: jax.Array, offsets: jax.Array,
               unit: jax.Array, image_only_grad: bool = True, conv: str = "xla"):
    self.spec, self.params, self.images, self.offsets, self.unit = (
        spec, params, images, offsets, unit)
    self.image_only_grad = image_only_grad
    self.conv = conv  # the convolution backend of the image-only forward pass
    self._cache: dict[tuple[str, str], jax.Array] = {}

  def features(self, layer: str, output: L.Output = "activation") -> jax.Array:
    """`layer`'s output (or input, or pre-activation) for the D images: `[D, h, w, c]`/`[D, c]`."""
    key = (layer, output)
    if key not in self._cache:
      if self.image_only_grad:
        y = forward.forward(self.spec, self.params, self.images, layer, output, self.conv)
      else:
        y = self.spec.module.apply({"params": self.params}, self.images, upto=layer,
                                   output=output)
      self._cache[key] = y
    return self._cache[key]

  def unit_output(self, layer: str, output: L.Output, channel_only: bool) -> jax.Array:
    """The filter's own channel of `layer`: `[D, h, w]` for maps, `[D]` for dense units.

    With `channel_only`, a conv target is evaluated for this channel alone from the layer's
    input (kernel slice k), which is all the objective needs. `output` "activation" gives
    what the layer reports; "pre_activation" leaves its fused activation out.
    """
    target = self.spec.layer(layer)
    if channel_only and isinstance(target, L.Conv):
      h = self.features(layer, "input")
      kernel = jax.lax.dynamic_slice_in_dim(self.params[layer]["kernel"], self.unit, 1, axis=3)
      bias = jax.lax.dynamic_slice_in_dim(self.params[layer]["bias"], self.unit, 1)
      y = forward.conv_layer(h, target, kernel, bias, self.conv)[..., 0]
      return y if output == "pre_activation" else L.activate(y, target.activation)
    y = self.features(layer, output)
    return jax.lax.dynamic_index_in_dim(y, self.unit, axis=y.ndim - 1, keepdims=False)


Values = tuple[jax.Array, jax.Array]  # (followed [D], reported [D])


@dataclasses.dataclass(frozen=True)
class Term:
  """One quantity per image: `fn(probe, hp) → (followed [D], true [D])`, `hp` the traced
  hyperparameters; `unit` terms are the ones whose true value is reported as the filter's
  activation."""
  name: str
  fn: Callable[[Probe], Values]
  unit: bool = False


@dataclasses.dataclass(frozen=True)
class Hyper:
  """A weight read from the hyperparameters at run time: `hp[name]`."""
  name: str


Weight = float | Hyper


@dataclasses.dataclass(frozen=True)
class Objective:
  """A weighted sum of terms; call it with a probe and the hyperparameters."""
  parts: tuple[tuple[Weight, Term], ...]

  def __add__(self, other: "Objective") -> "Objective":
    return Objective(self.parts + other.parts)

  def __sub__(self, other: "Objective") -> "Objective":
    return self + (-1.0) * other

  def __neg__(self) -> "Objective":
    return (-1.0) * self

  def __mul__(self, factor: float | Hyper) -> "Objective":
    if isinstance(factor, Hyper):
      if any(isinstance(w, (Hyper, _Scaled)) for w, _ in self.parts):
        raise JaxvizError("an objective term can carry at most one hyperparameter weight")
      return Objective(tuple((_times(w, factor), t) for w, t in self.parts))
    return Objective(tuple((_times(w, float(factor)), t) for w, t in self.parts))

  __rmul__ = __mul__

  @property
  def names(self) -> list[str]:
    return [t.name for _, t in self.parts]

  @property
  def hyperparameters(self) -> list[str]:
    """The names of the `Hyper` weights, which `hp` must hold."""
    return [w.name for w, _ in self.parts if isinstance(w, (Hyper, _Scaled))]

  def __call__(self, probe: Probe, hp: Hyperparameters) -> Values:
    """`(total followed value [D], reported activation [D])` for the probe's images."""
    total, reported = 0.0, None
    for weight, term in self.parts:
      followed, true = term.fn(probe, hp)
      total = total + _value(weight, hp) * followed
      if term.unit and reported is None:
        reported = true
    if reported is None:
      raise JaxvizError(f"objective {' + '.join(self.names)} has no unit term (channel, neuron, "
                        "class logit or direction) whose activation could be reported")
    return total, reported


def _times(weight: Weight, factor: Weight) -> Weight:
  if isinstance(factor, Hyper):
    return factor if weight == 1.0 else _Scaled(weight, factor)
  if isinstance(weight, Hyper):
    return _Scaled(factor, weight)
  if isinstance(weight, _Scaled):
    return _Scaled(weight.factor * factor, weight.hyper)
  return weight * factor


@dataclasses.dataclass(frozen=True)
class _Scaled:
  factor: float
  hyper: Hyper

  @property
  def name(self) -> str:
    return self.hyper.name


def _value(weight, hp: Hyperparameters):
  if isinstance(weight, Hyper):
    return hp[weight.name]
  if isinstance(weight, _Scaled):
    return weight.factor * hp[weight.hyper.name]
  return weight


def _single(term: Term) -> Objective:
  return Objective(((1.0, term),))


# --- unit terms: what a filter is -----------------------------------------------------------

def check_exclude_border(map_shape: tuple[int, ...], border: int, layer: str,
                         seen_as: str = "") -> None:
  """Refuses an `exclude_border` that leaves nothing of `layer`'s `(h, w, …)` activation map;
  `seen_as` says where that map comes from, for the message (e.g. a crop's window)."""
  if border and len(map_shape) >= 2 and 2 * border >= min(map_shape[:2]):
    where = f" ({seen_as})" if seen_as else ""
    raise JaxvizError(f"exclude_border={border} leaves nothing of the {map_shape[0]}×"
                      f"{map_shape[1]} activation map of {layer!r}{where}; use a value below "
                      f"{(min(map_shape[:2]) + 1) // 2}")


def _spatial_mean(y: jax.Array, border: int, layer: str) -> jax.Array:
  """`[D, h, w]` → `[D]`, leaving out `border` activation pixels at each edge."""
  check_exclude_border(y.shape[1:3], border, layer)
  return jnp.mean(y[:, border:y.shape[1] - border, border:y.shape[2] - border], axis=(1, 2))


def relu_follows(spec: ModelSpec, layer: str) -> bool:
  """True when `layer`'s output goes through a ReLU: fused (VGG16's convs) or the next layer
  (LeNet's `conv2d_2` → `activation_2`)."""
  if getattr(spec.layer(layer), "activation", None) == "relu":
    return True
  following = spec.layers[spec.layer_names.index(layer) + 1:][:1]
  return bool(following) and isinstance(following[0], L.Activation) and \
      following[0].activation == "relu"


def _unit_term(name: str, spec: ModelSpec, layer: str, before_relu: bool, rescue: bool,
               channel_only: bool, reduce: Callable[[jax.Array], jax.Array],
               follow_relu: bool = True) -> Term:
  """A unit of `layer` reduced to one value per image, after its fused ReLU and (with
  `follow_relu`) a ReLU layer right after it, unless `before_relu`; with ReLU rescue where it
  applies."""
  fused = getattr(spec.layer(layer), "activation", None) == "relu"
  relu = (fused or (follow_relu and relu_follows(spec, layer))) and not before_relu
  output = "pre_activation" if (before_relu or relu) else "activation"

  def fn(probe, hp):
    y = probe.unit_output(layer, output, channel_only)
    if y.ndim == 1:  # a dense unit is its own value
      true = jax.nn.relu(y) if relu else y
      return (jnp.where(y > 0, true, y) if (relu and rescue) else true), true
    true = reduce(jax.nn.relu(y) if relu else y)
    if not (relu and rescue):
      return true, true
    slope = hp.get("rescue_slope", 0.0)
    leaky = reduce(jax.nn.relu(y) + slope * jnp.minimum(y, 0.0))
    peak = jnp.max(y, axis=(1, 2))
    # Slope 0: the post-ReLU mean once anything fires, the peak before. Slope > 0: leaky always.
    return jnp.where((peak > 0) | (slope > 0), leaky, peak), true

  return Term(name, fn, unit=True)


def channel(spec: ModelSpec, layer: str, *, before_relu: bool = False, exclude_border: int = 0,
            rescue: bool = True, channel_only: bool = True, follow_relu: bool = True
            ) -> Objective:
  """Mean activation of filter k's map over the image (or dense unit k itself), after the ReLU
  that follows the layer, fused or not: for LeNet's `conv2d_2` that is `activation_2`'s channel.

  Args:
    before_relu: the map before that ReLU instead.
    follow_relu: False leaves out a ReLU *layer* after the target (the layer's output as Keras
      reports it, as the seeds maximize it); a fused ReLU is part of the output either way.
    exclude_border: activation pixels left out at each edge (they see padded input).
    rescue: ReLU rescue: follow the pre-activation map's peak while the post-ReLU map is zero
      everywhere, or with the hyperparameter `rescue_slope` > 0 a leaky ReLU throughout.
    channel_only: evaluate only channel k of a conv target (same value, less work).
  """
  if exclude_border < 0:
    raise JaxvizError(f"exclude_border must be ≥ 0, got {exclude_border}")
  return _single(_unit_term(f"channel({layer})", spec, layer, before_relu, rescue, channel_only,
                            lambda y: _spatial_mean(y, exclude_border, layer), follow_relu))


def neuron(spec: ModelSpec, layer: str, *, before_relu: bool = False, rescue: bool = True,
           channel_only: bool = True, follow_relu: bool = True) -> Objective:
  """Filter k's activation at the centre of its map (ReLUs as in `channel`)."""
  def centre(y):
    return y[:, y.shape[1] // 2, y.shape[2] // 2]
  return _single(_unit_term(f"neuron({layer})", spec, layer, before_relu, rescue, channel_only,
                            centre, follow_relu))


def class_logit(spec: ModelSpec, layer: str | None = None) -> Objective:
  """Class k's logit: the logits layer's unit k before its softmax."""
  layer = layer or spec.logits_layer
  if not layer:
    raise JaxvizError(f"model {spec.name!r} has no classifier top, so no class logits")
  return _single(_unit_term(f"class_logit({layer})", spec, layer, True, False, False,
                            lambda y: jnp.mean(y, axis=(1, 2))))


def direction(spec: ModelSpec, layer: str, vectors: np.ndarray) -> Objective:
  """The mean over the map of the activations' dot product with direction k: `vectors`
  `[K, C]` holds one direction in `layer`'s channel space per "filter" k."""
  vectors = jnp.asarray(vectors, jnp.float32)
  channels = int(spec.output_shape(layer)[-1])
  if vectors.ndim != 2 or vectors.shape[1] != channels:
    raise JaxvizError(f"directions for {layer!r} must have shape [K, {channels}], "
                      f"got {tuple(vectors.shape)}")

  def fn(probe, hp):
    y = probe.features(layer, "activation")
    v = jax.lax.dynamic_index_in_dim(vectors, probe.unit, keepdims=False)
    value = jnp.mean(y @ v, axis=tuple(range(1, y.ndim - 1))) if y.ndim > 2 else y @ v
    return value, value

  return _single(Term(f"direction({layer})", fn, unit=True))


# --- penalties and diversity ----------------------------------------------------------------

def _penalty(name: str, fn: Callable[[jax.Array], jax.Array]) -> Objective:
  def term(probe, hp):
    value = jax.vmap(fn)(probe.offsets)
    return value, value
  return _single(Term(name, term))


def l1() -> Objective:
  """Mean |pixel − neutral| / 255 of each untransformed image; subtract it to keep images plain."""
  return _penalty("l1", regularizers.l1)


def l2() -> Objective:
  """Root mean square of (pixel − neutral) / 255 of each untransformed image."""
  return _penalty("l2", regularizers.l2)


def total_variation() -> Objective:
  """Total variation of (pixel − neutral) / 255 of each untransformed image."""
  return _penalty("total_variation", regularizers.total_variation)


def diversity(spec: ModelSpec, layer: str, output: L.Output = "input") -> Objective:
  """Minus the similarity of each image's style to the other images of its filter: Lucid's
  cosine similarity of Gram matrices of `layer`'s `output` (by default what `layer` receives),
  summed over the other images and divided by D. Add it to push D images of a filter apart."""
  spec.layer(layer)

  def fn(probe, hp):
    y = probe.features(layer, output)
    d = y.shape[0]
    if d < 2:
      zero = jnp.zeros((d,), y.dtype)
      return zero, zero
    flat = y.reshape(d, -1, y.shape[-1])
    grams = jnp.einsum("dpc,dpe->dce", flat, flat)
    grams = grams / (jnp.sqrt(jnp.sum(grams ** 2, axis=(1, 2), keepdims=True)) + 1e-10)
    similarity = jnp.einsum("dce,fce->df", grams, grams)
    others = (jnp.sum(similarity, axis=1) - jnp.diagonal(similarity)) / d
    return -others, -others

  return _single(Term(f"diversity({layer})", fn))
