"""The compiled multi-filter optimizer: image k ascends the mean activation of filter k, for every
requested filter of a layer at once.

One step for a group of images, each toward its own filter:

    x' = jitter(key_k, x_k)                        random shift before the forward pass
    a_k = objective(x'_k, k)                       forward stops at the target layer
    g = grad(sum_k a_k)                            one gradient: g_k is image k's own
    g_k = g_k / (sqrt(mean(g_k²)) + 1e-5)          the seeds' normalization, per image
    x_k = regularize(x_k + optax_update(g_k))      decay, blur, clipping, per image

Each filter starts from noise seeded with `(seed, filter)` and draws its jitter from
`fold_in(key, filter)` and then `fold_in(·, step)`, so its image does not depend on which
filters share its chunk. A chunk is one compiled program (steps in a `lax.scan`, groups of
images in a `lax.map`); the last chunk is padded to the same shape, so a layer compiles once and
a second call compiles nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxviz import chunking, objectives, regularizers, transforms
from jaxviz.errors import JaxvizError, unknown
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.progress import SILENT, Progress
from jaxviz.ranges import parse_ranges

LOOPS = ("unroll", "scan", "python")


@dataclasses.dataclass(frozen=True)
class AscentSettings:
  """How images are optimized; the config fields of the same names (configs/lenet_seed.py)."""
  steps: int = 20
  step_size: float = 1.0
  optimizer: str = "sgd"
  normalize_grad: bool = True
  init_noise: float = 20.0
  exclude_border: int = 0
  before_relu: bool = False
  decay: float = 0.0
  blur_sigma: float = 0.0
  blur_every: int = 4
  clip_norm_percentile: float = 0.0
  clip_contribution_percentile: float = 0.0
  jitter: int = 0
  tv_weight: float = 0.0
  loop: str = "scan"
  channel_only: bool = True
  image_only_grad: bool = True

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "AscentSettings":
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{n: config[n] for n in names if n in config})

  def validate(self) -> None:
    if self.steps <= 0:
      raise JaxvizError(f"steps must be ≥ 1, got {self.steps}")
    if self.step_size <= 0:
      raise JaxvizError(f"step_size must be > 0, got {self.step_size}")
    if self.loop not in LOOPS:
      raise unknown("loop", self.loop, LOOPS)
    if self.blur_every <= 0:
      raise JaxvizError(f"blur_every must be ≥ 1, got {self.blur_every}")
    for name in ("clip_norm_percentile", "clip_contribution_percentile"):
      if not 0 <= getattr(self, name) < 100:
        raise JaxvizError(f"{name} must be in [0, 100), got {getattr(self, name)}")
    if not 0 <= self.decay < 1:
      raise JaxvizError(f"decay must be in [0, 1), got {self.decay}")
    if self.jitter < 0 or self.blur_sigma < 0 or self.tv_weight < 0 or self.init_noise < 0:
      raise JaxvizError("jitter, blur_sigma, tv_weight and init_noise must be ≥ 0")
    make_optimizer(self.optimizer, self.step_size)


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
  """`optax.<name>(learning_rate)`, e.g. sgd, adam, rmsprop; a clear error for other names."""
  factory = getattr(optax, name, None)
  valid = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "lamb", "lion", "nadam", "radam"]
  if not callable(factory):
    raise unknown("optimizer", name, valid)
  try:
    return factory(learning_rate)
  except TypeError:
    raise unknown("optimizer", name, valid) from None


class FilterResult(NamedTuple):
  """Per requested filter, in request order.

  filters: `[N]` int filter indices.
  images: `[N, H, W, C]` float32 optimized images in the model's input space.
  activations: `[N, steps + 1]` float32 objective value before each step, then of the final image.
  """
  filters: np.ndarray
  images: np.ndarray
  activations: np.ndarray

  @property
  def final_activations(self) -> np.ndarray:
    return self.activations[:, -1]


def parse_filters(value: str | Sequence[int], count: int) -> list[int]:
  """`"all"` → `[0, …, count-1]`; `"0,3,10-12"` or `[0, 3]` → those indices, checked."""
  if isinstance(value, str):
    text = value.strip()
    if text == "all":
      return list(range(count))
    try:
      indices = parse_ranges(text)
    except ValueError:
      raise JaxvizError(f"filters must be 'all' or indices like '0,3,10-19'; "
                        f"got {value!r}") from None
  else:
    indices = [int(i) for i in value]
  if not indices:
    raise JaxvizError("no filters requested")
  bad = [i for i in indices if not 0 <= i < count]
  if bad:
    raise JaxvizError(f"filter index {bad[0]} is out of range: the layer has {count} filters "
                      f"(0–{count - 1})")
  return indices


def initial_images(spec: ModelSpec, filters: Sequence[int], seed: int,
                   shape: tuple[int, int, int], noise: float) -> np.ndarray:
  """The seeds' start: grey 128 plus uniform noise of width `noise`, in pixels, preprocessed.

  Returns `[N, H, W, C]` float32 in the model's input space. Filter f's noise comes from its own
  generator, seeded with `(seed, f)`, so it does not depend on the other filters requested.
  """
  pixels = np.stack([
      128.0 + (np.random.default_rng([seed, f]).random(shape, np.float32) - 0.5) * noise
      for f in filters])
  return np.asarray(spec.preprocess(pixels), np.float32)


class FilterEngine:
  """Optimizes images for filters of one layer of `model`; compiled once per chunk shape.

  Attributes:
    num_filters: filters in the layer.
    traces: how many times the chunk program was traced (compiled); for tests.
  """

  def __init__(self, model: Model, layer: str, settings: AscentSettings = AscentSettings(),
               size: int | None = None):
    settings.validate()
    self.model = model
    self.layer = layer
    self.settings = settings
    self.image_shape = model.spec.input_shape_for(size)
    self.num_filters = objectives.num_filters(model.spec, layer)
    self.traces = 0
    s = settings
    self._objective = objectives.channel_mean(
        model.spec, layer, exclude_border=s.exclude_border, before_relu=s.before_relu,
        channel_only=s.channel_only, image_only_grad=s.image_only_grad)
    self._optimizer = make_optimizer(s.optimizer, s.step_size)
    self._regularize = regularizers.make_regularizer(
        decay_rate=s.decay, blur_sigma=s.blur_sigma, blur_every=s.blur_every,
        clip_norm_percentile=s.clip_norm_percentile,
        clip_contribution_percentile=s.clip_contribution_percentile)
    self.micro_batch = chunking.micro_batch(model.spec, layer, self.image_shape)
    self._run_chunk = jax.jit(self._chunk_program, static_argnums=(4, 5), donate_argnums=(1,))
    self._step = jax.jit(self._batched_step, donate_argnums=(1, 2))
    self._final = jax.jit(self._final_activations)

  # --- the step, for a chunk of images ------------------------------------------------------

  def _batched_step(self, params, images, opt_states, keys, filters, step):
    """One ascent step for images `[B, H, W, C]`, each toward its own filter `[B]`.

    The objective is summed over the chunk and differentiated once: image b's gradient is its
    own objective's, since no image's value depends on another's.
    """
    s = self.settings
    step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step)

    def total(images):
      shifted = jax.vmap(transforms.jitter, in_axes=(0, 0, None))(step_keys, images, s.jitter)
      activations = self._objective(params, shifted, filters)
      penalty = s.tv_weight * jax.vmap(regularizers.total_variation)(images) if s.tv_weight else 0
      return jnp.sum(activations - penalty), activations

    grads, activations = jax.grad(total, has_aux=True)(images)
    update = jax.vmap(self._image_update, in_axes=(0, 0, 0, None))
    images, opt_states = update(images, grads, opt_states, step)
    return images, opt_states, activations

  def _image_update(self, image, grad, opt_state, step):
    """Normalized ascent, the optimizer and the regularizers, for one image `[H, W, C]`."""
    if self.settings.normalize_grad:
      grad = grad / (jnp.sqrt(jnp.mean(grad ** 2)) + 1e-5)
    updates, opt_state = self._optimizer.update(-grad, opt_state, image)
    image = optax.apply_updates(image, updates)
    return self._regularize(image, grad, step), opt_state

  def _final_activations(self, params, images, filters):
    return self._objective(params, images, filters)

  def _step_keys(self, key, filters):
    return jax.vmap(lambda f: jax.random.fold_in(jax.random.fold_in(key, f), 1))(filters)

  def _chunk_program(self, params, images, filters, key, devices, micro):
    """images `[N, H, W, C]`, filters `[N]` → (images, activations `[N, steps + 1]`).

    The N images are laid out as `[devices, groups, micro]`: the device axis is what sharding
    splits, each device walks its groups one after another (`lax.map`), and each group of
    `micro` images ascends together. A device thus does the same work whatever the number of
    devices, and small groups keep a shallow layer's activations in cache on CPUs.
    """
    self.traces += 1
    n, rest = images.shape[0], images.shape[1:]
    groups = n // (devices * micro)
    x = images.reshape(devices, groups, micro, *rest)
    f = filters.reshape(devices, groups, micro)

    def per_device(x, f):
      if groups == 1:
        return jax.tree_util.tree_map(lambda a: a[None], self._ascend(params, x[0], f[0], key))
      return jax.lax.map(lambda xf: self._ascend(params, xf[0], xf[1], key), (x, f))

    images, activations = jax.vmap(per_device)(x, f)
    return images.reshape(n, *rest), activations.reshape(n, -1)

  def _ascend(self, params, images, filters, key):
    """All steps for images `[B, H, W, C]` and filters `[B]`; returns the final images and the
    activations `[B, steps + 1]`."""
    keys = self._step_keys(key, filters)
    opt_states = jax.vmap(self._optimizer.init)(images)
    if self.settings.loop == "scan":
      def body(carry, step):
        images, opt_states = carry
        images, opt_states, act = self._batched_step(params, images, opt_states, keys, filters,
                                                     step)
        return (images, opt_states), act
      (images, _), history = jax.lax.scan(body, (images, opt_states),
                                          jnp.arange(self.settings.steps))
      history = list(history)
    else:
      history = []
      for step in range(self.settings.steps):
        images, opt_states, act = self._batched_step(params, images, opt_states, keys, filters,
                                                     step)
        history.append(act)
    history.append(self._final_activations(params, images, filters))
    return images, jnp.stack(history, axis=1)

  def _python_loop(self, params, images, filters, key):
    """The same program with the step compiled alone and driven from Python."""
    keys = jax.jit(self._step_keys)(key, filters)
    opt_states = jax.jit(jax.vmap(self._optimizer.init))(images)
    history = []
    for step in range(self.settings.steps):
      images, opt_states, act = self._step(self.model.params, images, opt_states, keys, filters,
                                           jnp.int32(step))
      history.append(act)
    history.append(self._final(self.model.params, images, filters))
    return images, jnp.stack(history, axis=1)

  # --- the public call -----------------------------------------------------------------------

  def run(self, filters: str | Sequence[int] = "all", *, seed: int = 0, chunk_size: int = 0,
          memory_budget_mb: int = 0, start_images: np.ndarray | None = None,
          progress: Progress = SILENT) -> FilterResult:
    """Optimizes one image per requested filter.

    Args:
      filters: "all", "0,3,10-19", or a list of indices.
      seed: base random key; results for a filter depend only on it, never on chunking.
      chunk_size: filters per compiled batch; 0 = chosen from the memory budget (`plan`).
      memory_budget_mb: for chunk_size 0; 0 = half the free host memory (CPU) or 80 % of the
        accelerator's.
      start_images: `[N, H, W, C]` images to start from, one per requested filter in request
        order (e.g. a previous result, for a second pass); None = grey plus noise.
    """
    indices = parse_filters(filters, self.num_filters)
    if start_images is not None and np.shape(start_images) != (len(indices), *self.image_shape):
      raise JaxvizError(f"start_images must have shape {(len(indices), *self.image_shape)}, "
                        f"got {np.shape(start_images)}")
    chunks, pad_to = self.plan(indices, chunk_size, memory_budget_mb)
    parts, done = [], 0
    for c, part in enumerate(chunks):
      start = None if start_images is None else start_images[done:done + len(part)]
      parts.append(self.run_chunk(part, seed=seed, pad_to=pad_to, start_images=start))
      done += len(part)
      if len(chunks) > 1:
        progress(f"{self.layer}: chunk {c + 1}/{len(chunks)} done")
    return FilterResult(np.asarray(indices), np.concatenate([p.images for p in parts]),
                        np.concatenate([p.activations for p in parts]))

  def plan(self, indices: Sequence[int], chunk_size: int,
           memory_budget_mb: int = 0) -> tuple[list[list[int]], int]:
    """Splits filter indices into chunks; returns them and the size each is padded to when run.

    `chunk_size` 0 chooses it (`chunking.resolve_chunk_size`): as many filters as
    `memory_budget_mb` holds (0 = half the host's free memory, 80 % of an accelerator's).
    """
    indices = list(indices)
    chunk_size = chunking.resolve_chunk_size(self.model.spec, self.layer, self.image_shape,
                                             len(indices), chunk_size, memory_budget_mb)
    return [indices[i:i + chunk_size] for i in range(0, len(indices), chunk_size)], chunk_size

  def run_chunk(self, filters: Sequence[int], *, seed: int = 0, pad_to: int | None = None,
                sharding: jax.sharding.Sharding | None = None,
                start_images: np.ndarray | None = None) -> FilterResult:
    """Runs one compiled chunk for `filters`, padded to `pad_to` images by repeating the last.

    `start_images` `[len(filters), H, W, C]` replaces the grey-plus-noise start.

    `sharding`, when given, places the chunk's images and filter indices (split along the
    filter axis) before the call; the compiled program follows it.
    """
    filters = [int(f) for f in filters]
    pad = (pad_to or len(filters)) - len(filters)
    if pad < 0:
      raise ValueError(f"chunk of {len(filters)} filters does not fit pad_to={pad_to}")
    padded = np.asarray(filters + [filters[-1]] * pad, np.int32)
    key = jax.random.key(seed)
    if start_images is None:
      x0 = initial_images(self.model.spec, padded, seed, self.image_shape, self.settings.init_noise)
    else:
      x0 = np.concatenate([start_images, np.repeat(start_images[-1:], pad, 0)])
    x0 = jnp.asarray(x0, jnp.float32)
    f = jnp.asarray(padded)
    if sharding is not None:
      x0, f = jax.device_put(x0, sharding), jax.device_put(f, sharding)
    if self.settings.loop == "python":
      images, activations = self._python_loop(self.model.params, x0, f, key)
    else:
      devices = sharding.num_devices if sharding is not None else 1
      per_device = len(padded) // devices
      micro = max(d for d in range(1, per_device + 1)
                  if per_device % d == 0 and d <= (self.micro_batch or per_device))
      images, activations = self._run_chunk(self.model.params, x0, f, key, devices, micro)
    n = len(filters)
    return FilterResult(np.asarray(filters), np.asarray(images)[:n], np.asarray(activations)[:n])
