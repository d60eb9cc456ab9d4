"""One pure ascent: settings, hyperparameters, and the step for a group of filters.

For filter k with D images, each step is

    pixels_d = param.to_pixels(vars_d)                 the parameterization (jaxviz.param)
    x_d = transform(key(seed, k, d, step), input(pixels_d))   random transforms, per image
    value = objective(x, pixels, k)                    jaxviz.objectives; [D] per image
    g = grad(sum value)                                one gradient for the whole group
    g_d = g_d / (sqrt(mean(g_d²)) + 1e-5)              the seeds' normalization (optional)
    vars_d = regularize(vars_d + optax_update(g_d))    decay, blur, clipping (pixel variables)

`AscentSettings` says which pieces run (fixed when compiled) and holds their strengths;
`AscentSettings.hyperparameters()` turns the strengths into the traced `hp` the compiled program
reads, so a run with other strengths, step size or transform ranges compiles nothing. Units
carry over between models: step sizes act on the parameterization's variables (pixel offsets in
0–255 grey levels, or spectral coefficients of a sigmoid-bounded image), noise is in grey
levels, and transform ranges are fractions of the image side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxviz import objectives, onednn, param, regularizers, transforms
from jaxviz.errors import JaxvizError, unknown
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec, Params

LOOPS = ("unroll", "scan", "python")
OBJECTIVES = ("channel", "neuron")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop", "adagrad", "lamb", "lion", "nadam", "radam")
SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.1  # a cosine schedule ends at this fraction of the step size

# The settings that are traced hyperparameters: other values of these compile nothing.
# Every step's activation is kept (`[filters, steps + 1]` floats) and each step is a forward and
# backward pass: past this many, a run takes days and its history more memory than the images.
MAX_STEPS = 100_000

HYPERPARAMETERS = ("step_size", "decay", "blur_sigma", "clip_norm_percentile",
                   "clip_contribution_percentile", "jitter", "scale", "rotate", "frame",
                   "l1_weight", "l2_weight", "tv_weight", "diversity_weight", "rescue_slope",
                   "lift", "average")

# Hyperparameters whose piece is in every program, so that any value, 0 included, needs no
# other engine (the rest are compiled only when the engine has them above 0).
ALWAYS_COMPILED = ("step_size", "rescue_slope", "lift", "average")

Hyperparameters = Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class AscentSettings:
  """How images are optimized; the config fields of the same names (configs/seed.py)."""
  steps: int = 20
  step_size: float = 1.0
  schedule: str = "constant"
  optimizer: str = "sgd"
  normalize_grad: bool = True
  init_noise: float = 20.0
  parameterization: str = "pixel"
  bounded: bool = False
  decay_power: float = 1.0
  decay_power_start: float = 1.0
  decay_ramp: float = 0.0
  decorrelate: bool = True
  objective: str = "channel"
  exclude_border: int = 0
  before_relu: bool = False
  follow_relu: bool = True
  rescue: bool = True
  rescue_slope: float = 0.0
  lift: float = 0.0
  average: float = 0.0
  decay: float = 0.0
  blur_sigma: float = 0.0
  blur_every: int = 4
  clip_norm_percentile: float = 0.0
  clip_contribution_percentile: float = 0.0
  pad: float = 0.0
  jitter: float = 0.0
  scale: float = 0.0
  rotate: float = 0.0
  crop: float = 1.0
  crop_first: bool = False
  frame: float = 0.0
  l1_weight: float = 0.0
  l2_weight: float = 0.0
  tv_weight: float = 0.0
  diversity: int = 1
  diversity_weight: float = 0.0
  robustness_samples: int = 16
  loop: str = "scan"
  channel_only: bool = True
  image_only_grad: bool = True
  conv: str = "auto"

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict | Mapping) -> "AscentSettings":
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{n: config[n] for n in names if n in config})

  @property
  def pixels_in_range(self) -> bool:
    """True when the parameterization keeps pixels in 0–255 (a sigmoid), so images can be shown
    as they are; pixel-space regularizers need the unbounded pixel parameterization."""
    return self.parameterization != "pixel" or self.bounded

  def hyperparameters(self) -> dict[str, np.ndarray]:
    """The traced values: `{name: float32 scalar}` for every name in `HYPERPARAMETERS`."""
    return {name: np.float32(getattr(self, name)) for name in HYPERPARAMETERS}

  def validate(self) -> None:
    """Raises `JaxvizError` naming the first setting out of its range."""
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if isinstance(value, float) and not np.isfinite(value):
        raise JaxvizError(f"{f.name} must be a finite number, got {value}")
    if not 1 <= self.steps <= MAX_STEPS:
      raise JaxvizError(f"steps must be in 1..{MAX_STEPS}, got {self.steps}")
    if self.step_size <= 0:
      raise JaxvizError(f"step_size must be > 0, got {self.step_size}")
    if self.loop not in LOOPS:
      raise unknown("loop", self.loop, LOOPS)
    if self.optimizer not in OPTIMIZERS:
      raise unknown("optimizer", self.optimizer, OPTIMIZERS)
    if self.conv not in onednn.BACKENDS:
      raise unknown("conv", self.conv, onednn.BACKENDS)
    if self.schedule not in SCHEDULES:
      raise unknown("schedule", self.schedule, SCHEDULES)
    if self.objective not in OBJECTIVES:
      raise unknown("objective", self.objective, OBJECTIVES)
    if self.parameterization not in param.KINDS:
      raise unknown("parameterization", self.parameterization, param.KINDS)
    if self.blur_every <= 0:
      raise JaxvizError(f"blur_every must be ≥ 1, got {self.blur_every}")
    for name in ("clip_norm_percentile", "clip_contribution_percentile"):
      if not 0 <= getattr(self, name) < 100:
        raise JaxvizError(f"{name} must be in [0, 100), got {getattr(self, name)}")
    if not 0 <= self.decay < 1:
      raise JaxvizError(f"decay must be in [0, 1), got {self.decay}")
    for name in ("jitter", "pad", "frame"):
      if not 0 <= getattr(self, name) <= 0.5:
        raise JaxvizError(f"{name} is a fraction of the image side, in [0, 0.5]; "
                          f"got {getattr(self, name)}")
    if not 0 < self.crop <= 1:
      raise JaxvizError(f"crop is the fraction of the image side each step sees, in (0, 1] "
                        f"(1: the whole image); got {self.crop}")
    if not 0 <= self.scale < 1:
      raise JaxvizError(f"scale must be in [0, 1) (zoom by 1 ± scale), got {self.scale}")
    if not 0 <= self.rotate <= 180:
      raise JaxvizError(f"rotate must be in [0, 180] degrees, got {self.rotate}")
    if self.blur_sigma < 0 or self.init_noise < 0 or self.init_noise > 1e4:
      raise JaxvizError("blur_sigma must be ≥ 0 and init_noise in [0, 10000] grey levels")
    if not 0 <= self.rescue_slope <= 1:
      raise JaxvizError(f"rescue_slope is the slope of the leaky ReLU followed below zero, in "
                        f"[0, 1] (0: follow the map's peak while it is all zero); got "
                        f"{self.rescue_slope}")
    if not 0 <= self.lift <= 1:
      raise JaxvizError(f"lift is the fraction of the steps that follow the map before its ReLU, "
                        f"in [0, 1]; got {self.lift}")
    if not 0 <= self.average < 1:
      raise JaxvizError(f"average is the weight of the running average of the variables, in "
                        f"[0, 1) (0: the last step's image); got {self.average}")
    if not 0 <= self.decay_ramp <= 1:
      raise JaxvizError(f"decay_ramp is a fraction of the steps, in [0, 1]; got {self.decay_ramp}")
    for name in ("l1_weight", "l2_weight", "tv_weight", "diversity_weight", "decay_power",
                 "decay_power_start"):
      if getattr(self, name) < 0:
        raise JaxvizError(f"{name} must be ≥ 0, got {getattr(self, name)}")
    if not 1 <= self.diversity <= 64:
      raise JaxvizError(f"diversity (images per filter) must be in 1..64, got {self.diversity}")
    if not 0 <= self.robustness_samples <= 256:
      raise JaxvizError(f"robustness_samples must be in 0..256, got {self.robustness_samples}")
    if self.pixels_in_range:
      blocked = [n for n in ("blur_sigma", "clip_norm_percentile",
                             "clip_contribution_percentile") if getattr(self, n) > 0]
      if blocked:
        raise JaxvizError(f"{', '.join(blocked)}: these regularizers act on pixel "
                          f"variables; with parameterization={self.parameterization!r}"
                          f"{' (bounded)' if self.bounded else ''} use the penalties "
                          "(tv_weight, l1_weight, l2_weight) or transforms instead")
    make_optimizer(self.optimizer, self.step_size)


def make_optimizer(name: str, learning_rate: float | jax.Array, schedule: str = "constant",
                   steps: int = 1) -> optax.GradientTransformation:
  """`optax.<name>` with its learning rate as an injected (traceable) hyperparameter: constant,
  or along a cosine from `learning_rate` down to `COSINE_FLOOR` of it over `steps` steps."""
  if name not in OPTIMIZERS:  # optax has others, but not all take a plain gradient step
    raise unknown("optimizer", name, OPTIMIZERS)
  factory = getattr(optax, name)
  def cosine(count):
    done = jnp.minimum(count, steps) / max(steps, 1)
    return learning_rate * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + jnp.cos(jnp.pi * done)))

  rate = cosine if schedule == "cosine" else learning_rate
  try:
    return optax.inject_hyperparams(factory)(learning_rate=rate)
  except TypeError:
    raise unknown("optimizer", name, OPTIMIZERS) from None


class Ascent(NamedTuple):
  """Everything fixed about one layer's ascent: built once, traced once.

  image_shape: `(H, W, C)` of the images.
  conv: the convolution backend `settings.conv` resolves to here ('xla', 'onednn' or
    'onednn_bf16'; the last for the steps only: `evaluate` computes in float32).
  """
  spec: ModelSpec
  layer: str
  settings: AscentSettings
  image_shape: tuple[int, int, int]
  param: param.Parameterization
  transform: object            # (key, image, hp) → image
  objective: objectives.Objective
  regularize: regularizers.Regularizer
  conv: str = "xla"
  steepen: np.ndarray | None = None  # [H, W//2 + 1] `param.slope_ratio` while the slope ramps


def default_objective(spec: ModelSpec, layer: str, s: AscentSettings) -> objectives.Objective:
  """The objective the settings describe: the filter's channel mean (or centre neuron), minus
  the penalties switched on, plus diversity when D > 1."""
  unit = objectives.channel if s.objective == "channel" else objectives.neuron
  kwargs = dict(exclude_border=s.exclude_border) if s.objective == "channel" else {}
  objective = unit(spec, layer, before_relu=s.before_relu, rescue=s.rescue,
                   channel_only=s.channel_only, follow_relu=s.follow_relu, **kwargs)
  for name, penalty in (("l1_weight", objectives.l1), ("l2_weight", objectives.l2),
                        ("tv_weight", objectives.total_variation)):
    if getattr(s, name) > 0:
      objective = objective - objectives.Hyper(name) * penalty()
  if s.diversity > 1 and s.diversity_weight > 0:
    objective = objective + objectives.Hyper("diversity_weight") * objectives.diversity(
        spec, layer)
  return objective


def takes_windows(spec: ModelSpec, layer: str) -> bool:
  """True when `layer` can be computed from a part of the image (no Flatten before it), so the
  `crop` transform applies; a dense unit sees the whole image whatever `crop` says."""
  names = spec.layer_names
  return not any(isinstance(l, L.Flatten) for l in spec.layers[:names.index(layer) + 1])


def step_crop(spec: ModelSpec, layer: str, settings: AscentSettings) -> float:
  """The crop fraction the steps use for `layer`: `settings.crop` where the layer takes
  windows, else 1 (the whole image)."""
  return settings.crop if takes_windows(spec, layer) else 1.0


def step_map_shape(spec: ModelSpec, layer: str, settings: AscentSettings, size: int | None = None
                   ) -> tuple[int, ...]:
  """`layer`'s output shape for one image as the steps see it: for a `step_crop` < 1, the map
  of the crop's window; else of the whole image of `size` (None or 0: the model's own)."""
  h, w, c = spec.input_shape_for(size)
  fraction = step_crop(spec, layer, settings)
  if fraction >= 1:
    return spec.output_shape(layer, size)
  window = jax.ShapeDtypeStruct((1, transforms.window_side(fraction, h),
                                 transforms.window_side(fraction, w), c), jnp.float32)
  out = jax.eval_shape(lambda key, x: spec.module.init_with_output(key, x, upto=layer)[0],
                       jax.random.key(0), window)
  return tuple(out.shape[1:])


def make_ascent(spec: ModelSpec, layer: str, settings: AscentSettings, size: int | None = None,
                objective: objectives.Objective | None = None) -> Ascent:
  """Checks the settings and builds the pieces of one layer's ascent."""
  settings.validate()
  s = settings
  shape = spec.input_shape_for(size)
  objectives.num_filters(spec, layer)  # an unknown layer fails here, listing the valid ones
  ramp = s.parameterization == "fourier" and s.decay_ramp > 0
  parameterization = param.make(s.parameterization, shape, spec.neutral_pixel,
                                init_noise=s.init_noise, bounded=s.bounded,
                                decay_power=s.decay_power_start if ramp else s.decay_power,
                                decorrelate=s.decorrelate)
  chain = transforms.make(s.pad, s.jitter > 0, s.scale > 0, s.rotate > 0,
                          step_crop(spec, layer, s), s.frame > 0, s.crop_first)
  regularize = regularizers.make_regularizer(
      decay_on=s.decay > 0, blur_on=s.blur_sigma > 0, blur_every=s.blur_every,
      clip_norm_on=s.clip_norm_percentile > 0,
      clip_contribution_on=s.clip_contribution_percentile > 0)
  return Ascent(spec, layer, s, shape, parameterization, transforms.compose(chain),
                objective or default_objective(spec, layer, s), regularize,
                onednn.resolve(s.conv) if s.image_only_grad else "xla",
                param.slope_ratio(*shape[:2], s.decay_power_start, s.decay_power) if ramp else None)


# --- the pure functions the engine compiles ---------------------------------------------------

def to_input(a: Ascent, v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Variables `[D, …]` → (model input `[D, H, W, C]`, offsets from neutral / 255)."""
  pixels = jax.vmap(a.param.to_pixels)(v)
  offsets = (pixels - jnp.asarray(a.spec.neutral_pixel)) / 255.0
  return a.spec.pixels_to_input(pixels), offsets


def filter_value(a: Ascent, params: Params, v: jax.Array, unit: jax.Array, key: jax.Array | None,
                 hp: Hyperparameters) -> tuple[jax.Array, jax.Array]:
  """One filter's D images `v` `[D, …]` → (followed value [D], reported activation [D]).

  `key` None: the images as they are; else image d is transformed with `fold_in(key, d)`.
  """
  x, offsets = to_input(a, v)
  if key is not None:
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(x.shape[0]))
    x = jax.vmap(a.transform, in_axes=(0, 0, None))(keys, x, hp)
  probe = objectives.Probe(a.spec, params, x, offsets, unit, a.settings.image_only_grad, a.conv)
  return a.objective(probe, hp)


def filter_keys(key: jax.Array, filters: jax.Array) -> jax.Array:
  """`[B]` one key per filter, from the run's key and the filter index alone."""
  return jax.vmap(lambda f: jax.random.fold_in(jax.random.fold_in(key, f), 1))(filters)


def step(a: Ascent, params: Params, v: jax.Array, opt_state, keys: jax.Array,
         filters: jax.Array, step_index: jax.Array | int, hp: Hyperparameters):
  """One ascent step for B filters: `v` `[B, D, …]`, `keys` `[B]`, `filters` `[B]`.

  Returns `(v, opt_state, activations [B, D])`, the activations those of the transformed
  images the step's gradient was taken on.
  """
  step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step_index)
  hp = lifted(a, hp, step_index)

  def total(v):
    followed, reported = jax.vmap(filter_value, in_axes=(None, None, 0, 0, 0, None))(
        a, params, v, filters, step_keys, hp)
    return jnp.sum(followed), reported

  grads, activations = jax.grad(total, has_aux=True)(v)
  optimizer = _optimizer(a, hp)
  update = jax.vmap(jax.vmap(lambda v, g, s: _image_update(a, optimizer, v, g, s, step_index,
                                                           hp)))
  v, opt_state = update(v, grads, opt_state)
  return v, opt_state, activations


def lifted(a: Ascent, hp: Hyperparameters, step_index: jax.Array | int) -> Hyperparameters:
  """`hp` for one step: during the first `hp["lift"]` of the steps the rescue's leaky ReLU has
  slope 1, so a unit with ReLU rescue follows its map's mean before the ReLU, which lifts every
  place of a map far below zero; afterwards `hp["rescue_slope"]`."""
  lifting = jnp.asarray(step_index, jnp.float32) < hp["lift"] * a.settings.steps
  return {**hp, "rescue_slope": jnp.where(lifting, jnp.float32(1.0), hp["rescue_slope"])}


def init_state(a: Ascent, v: jax.Array, hp: Hyperparameters):
  """The optimizer state of every image of `v` `[B, D, …]`."""
  return jax.vmap(jax.vmap(_optimizer(a, hp).init))(v)


def _optimizer(a: Ascent, hp: Hyperparameters) -> optax.GradientTransformation:
  s = a.settings
  return make_optimizer(s.optimizer, hp["step_size"], s.schedule, s.steps)


def _image_update(a: Ascent, optimizer, v, g, opt_state, step_index, hp):
  """Normalized ascent, the optimizer and the regularizers, for one image's variables."""
  if a.settings.normalize_grad:
    g = g / (jnp.sqrt(jnp.mean(g ** 2)) + 1e-5)
  updates, opt_state = optimizer.update(-g, opt_state, v)
  if a.steepen is not None:
    updates = updates * _steepening(a, step_index)[None, :, :, None]
  v = optax.apply_updates(v, updates)
  if a.param.pixel_space:
    v = a.regularize(v, g, step_index, hp)
  elif a.settings.decay > 0:
    v = regularizers.decay(v, hp["decay"])
  return v, opt_state


def _steepening(a: Ascent, step_index: jax.Array | int) -> jax.Array:
  """`[H, W//2 + 1]` the factor on each spectral coefficient's step: 1 at the first step (the
  slope `decay_power_start`), rising geometrically to `param.slope_ratio` (the slope
  `decay_power`) at step `decay_ramp · steps` and staying there."""
  ramp_steps = a.settings.decay_ramp * a.settings.steps  # > 0: `steepen` is set only then
  done = jnp.clip(jnp.asarray(step_index, jnp.float32) / ramp_steps, 0.0, 1.0)
  return jnp.asarray(a.steepen) ** done


def ascend(a: Ascent, params: Params, v: jax.Array, filters: jax.Array, key: jax.Array,
           hp: Hyperparameters) -> tuple[jax.Array, jax.Array]:
  """All steps for B filters' variables `v` `[B, D, …]`; returns the final variables and the
  activations `[B, D, steps]` before each step."""
  keys = filter_keys(key, filters)
  opt_state = init_state(a, v, hp)
  if a.settings.loop == "scan":
    def body(carry, i):
      v, opt_state, mean = carry
      v, opt_state, act = step(a, params, v, opt_state, keys, filters, i, hp)
      return (v, opt_state, average(mean, v, hp)), act
    (v, _, mean), history = jax.lax.scan(body, (v, opt_state, v), jnp.arange(a.settings.steps))
    return mean, jnp.moveaxis(history, 0, -1)
  history, mean = [], v
  for i in range(a.settings.steps):
    v, opt_state, act = step(a, params, v, opt_state, keys, filters, i, hp)
    mean = average(mean, v, hp)
    history.append(act)
  return mean, jnp.stack(history, axis=-1)


def average(mean: jax.Array, v: jax.Array, hp: Hyperparameters) -> jax.Array:
  """The running average of the variables after a step: `mean · β + v · (1 − β)`, β the
  hyperparameter `average` (0: the variables themselves)."""
  beta = hp["average"]
  return mean * beta + v * (1.0 - beta)


def evaluate(a: Ascent, params: Params, v: jax.Array, filters: jax.Array, hp: Hyperparameters
             ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The final images and their quality, for `v` `[B, D, …]`.

  Returns `(images [B, D, H, W, C]` in the model's input space, `activation [B, D]` of the
  untransformed image, `robustness [B, D]`: the mean activation over the held-out transforms
  (`transforms.robustness_transform`, the same draws for every image) over `activation`; NaN
  when there are no samples).

  The activation is computed in float32. The held-out samples run on the steps' convolutions
  (bfloat16 inputs where the steps use them, float32 sums): measured on VGG16 `block5_conv1`,
  their mean is within 0.2 % of float32's and the robustness within 0.0005 (QUALITY.md), in
  about half the time.
  """
  steps_conv, a = a.conv, a._replace(conv=onednn.exact(a.conv))
  images = jax.vmap(lambda v: to_input(a, v)[0])(v)
  value = jax.vmap(filter_value, in_axes=(None, None, 0, 0, None, None))
  activation = value(a, params, v, filters, None, hp)[1]
  a = a._replace(conv=steps_conv)
  samples = a.settings.robustness_samples
  if samples == 0:
    return images, activation, jnp.full_like(activation, jnp.nan)
  held_out = transforms.robustness_transform()
  base = jax.random.key(transforms.ROBUSTNESS_SEED)

  def add_sample(total, i):
    key = jax.random.fold_in(base, i)
    moved = jax.vmap(jax.vmap(lambda x: held_out(key, x)))(images)
    value = jax.vmap(reported_activation, in_axes=(None, None, 0, 0, None))(a, params, moved,
                                                                             filters, hp)
    return total + value, None

  # A running sum in a fixed order: the same bits however the program is partitioned.
  total, _ = jax.lax.scan(add_sample, jnp.zeros_like(activation), jnp.arange(samples))
  return images, activation, (total / samples) / activation


def reported_activation(a: Ascent, params: Params, x: jax.Array, unit: jax.Array,
                        hp: Hyperparameters) -> jax.Array:
  """The reported activation `[D]` of model-input images `x` `[D, H, W, C]`."""
  offsets = jnp.zeros_like(x)  # penalties do not enter the reported activation
  probe = objectives.Probe(a.spec, params, x, offsets, unit, a.settings.image_only_grad, a.conv)
  return a.objective(probe, hp)[1]
