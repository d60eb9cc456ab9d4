"""The compiled multi-filter engine: lays out, compiles and shards `jaxviz.ascent` over filters.

Image k ascends the objective of filter k (`jaxviz.ascent` holds the step), for every requested
filter of a layer at once. A chunk of filters is one compiled program: the steps in a
`lax.scan`, groups of filters in a `lax.map`, then the final images' activation and robustness.
The last chunk is padded to the same shape, and every strength, step size and transform range
is a traced hyperparameter, so a layer compiles once and a second call (with other values)
compiles nothing.

Each filter starts from its own generator, seeded with `(seed, filter)` (and the image index
when a filter has several images), and draws its transforms from `fold_in(key, filter)`, then
the step and the image, so its images do not depend on which filters share its chunk or device.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import ascent, chunking, forward, objectives, param
from jaxviz.ascent import AscentSettings
from jaxviz.errors import JaxvizError
from jaxviz.models.spec import Model
from jaxviz.progress import SILENT, Progress
from jaxviz.ranges import parse_indices


class FilterResult(NamedTuple):
  """Per requested filter, in request order. With D images per filter (diversity), the image
  arrays gain an axis after N.

  filters: `[N]` int filter indices.
  images: `[N, H, W, C]` (or `[N, D, H, W, C]`) float32 optimized images, model input space.
  activations: `[N, steps + 1]` (or `[N, D, steps + 1]`) float32: the objective of the
    transformed image before each step, then the true objective of the final image.
  robustness: `[N]` (or `[N, D]`) float32: the final image's mean activation under held-out
    random transforms over its activation (`jaxviz.ascent.evaluate`); None when not measured.
  woken: `[N]` (or `[N, D]`) bool: images that come from the second pass for dead filters
    (`jaxviz.wake`); None when there was none.
  """
  filters: np.ndarray
  images: np.ndarray
  activations: np.ndarray
  robustness: np.ndarray | None = None
  woken: np.ndarray | None = None

  @property
  def final_activations(self) -> np.ndarray:
    """`[N]` each filter's final activation (the mean over its images)."""
    final = self.activations[..., -1]
    return final if final.ndim == 1 else final.mean(axis=1)

  @property
  def filter_robustness(self) -> np.ndarray:
    """`[N]` each filter's robustness (the mean over its images); NaN when not measured."""
    if self.robustness is None:
      return np.full(len(self.filters), np.nan, np.float32)
    return self.robustness if self.robustness.ndim == 1 else self.robustness.mean(axis=1)

  @property
  def filter_woken(self) -> np.ndarray:
    """`[N]` bool: filters with at least one image from the second pass (`jaxviz.wake`)."""
    if self.woken is None:
      return np.zeros(len(self.filters), bool)
    return self.woken if self.woken.ndim == 1 else self.woken.any(axis=1)


FILTER_AXIS = "filters"  # the mesh axis a chunk's filters are split along


def local_sharding() -> jax.sharding.NamedSharding | None:
  """The filter axis split over this process's devices, or None when it has one. A process has
  several CPU devices when it asked for them (`jaxviz.host_devices`)."""
  devices = jax.local_devices()
  if len(devices) == 1:
    return None
  mesh = jax.sharding.Mesh(np.array(devices), (FILTER_AXIS,))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(FILTER_AXIS))


# XLA:CPU's older fusion emitters compile the chunk program in 60 % of the time (block5_conv1:
# 1.1 s against 1.8 s), as fast at run time; they round some reductions differently
# (BENCHMARKS.md, "Cold start: a faster compile").
CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def compiler_options() -> dict | None:
  """XLA options for the engine's programs: `CPU_COMPILER_OPTIONS` on a CPU backend whose XLA
  knows them (a tiny program compiled with them once), None otherwise."""
  if jax.default_backend() != "cpu":
    return None
  try:
    jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(
        np.float32(0)).compile()
  except Exception:  # an XLA without the option: its defaults
    return None
  return CPU_COMPILER_OPTIONS


class FilterEngine:
  """Optimizes images for filters of one layer of `model`; compiled once per chunk shape.

  Args:
    model: the model and its weights.
    layer: the layer whose filters (channels or units) are maximized.
    settings: the ascent (`jaxviz.ascent.AscentSettings`).
    size: image side (None: the model's default).
    objective: what each filter maximizes (`jaxviz.objectives`); None: the one the settings
      describe (`ascent.default_objective`).

  Attributes:
    num_filters: filters in the layer.
    images_per_filter: D, the images each filter gets (`settings.diversity`).
    traces: how many times the chunk program was traced (compiled); for tests.
  """

  def __init__(self, model: Model, layer: str, settings: AscentSettings = AscentSettings(),
               size: int | None = None, objective: objectives.Objective | None = None):
    self.model = model
    self.layer = layer
    self.settings = settings
    self.ascent = ascent.make_ascent(model.spec, layer, settings, size, objective)
    self.image_shape = self.ascent.image_shape
    self.num_filters = objectives.num_filters(model.spec, layer)
    self.images_per_filter = settings.diversity
    self.traces = 0
    images_per_group = chunking.micro_batch(model.spec, layer, self.image_shape)
    self.micro_batch = images_per_group and max(1, images_per_group // self.images_per_filter)
    options = compiler_options()
    self._run_chunk = jax.jit(self._chunk_program, static_argnums=(5, 6),
                              compiler_options=options)
    self._step = jax.jit(self._python_step, donate_argnums=(1, 2), compiler_options=options)
    self._average = jax.jit(ascent.average, compiler_options=options)
    self._init = jax.jit(lambda v, hp: ascent.init_state(self.ascent, v, hp),
                         compiler_options=options)
    self._evaluate = jax.jit(lambda params, v, f, hp: ascent.evaluate(self.ascent, params, v, f,
                                                                      hp),
                             compiler_options=options)
    self._score = None  # built on the first `score` call

  def hyperparameters(self, settings: AscentSettings | None = None) -> dict[str, jax.Array]:
    """The traced values of `settings` (default: the engine's): other values compile nothing,
    as long as no piece the engine has off is on."""
    return jax.device_put((settings or self.settings).hyperparameters())

  # --- the compiled programs ----------------------------------------------------------------

  def _chunk_program(self, params, v, filters, key, hp, mesh, micro):
    """Variables `[N, D, …]`, filters `[N]` → (images `[N, D, H, W, C]`, activations
    `[N, D, steps + 1]`, robustness `[N, D]`).

    `hp` holds scalars (one setting for every filter) or `[N]` arrays: item i's own values (a
    sweep's (setting, filter) items), each item then ascending alone under `vmap`.

    With a `mesh` (a 1-D mesh of devices, or None for one device) each device runs
    `_device_program` on its own slice of the filters (`shard_map`): every operation, the
    oneDNN convolution's custom call included, is local to a device, and a device does the
    same work whatever the number of devices.
    """
    self.traces += 1
    if mesh is None:
      return self._device_program(params, v, filters, key, hp, micro)
    split = jax.sharding.PartitionSpec(mesh.axis_names[0])
    whole = jax.sharding.PartitionSpec()
    per_item = jnp.ndim(hp["step_size"]) == 1
    hp_specs = jax.tree_util.tree_map(lambda _: split if per_item else whole, hp)
    local = lambda params, v, filters, key, hp: self._device_program(params, v, filters, key,
                                                                     hp, micro)
    return jax.shard_map(local, mesh=mesh, in_specs=(whole, split, split, whole, hp_specs),
                         out_specs=split, check_vma=False)(params, v, filters, key, hp)

  def _device_program(self, params, v, filters, key, hp, micro):
    """`_chunk_program` on one device: its N filters in groups of `micro` that ascend
    together, one group after another (`lax.map`); small groups keep a shallow layer's
    activations in cache on CPUs."""
    params = self._prepare(params)
    n = v.shape[0]
    groups = n // micro
    per_item = jnp.ndim(hp["step_size"]) == 1
    layout = lambda a: a.reshape(groups, micro, *a.shape[1:])
    x, f = layout(v), layout(filters)
    h = jax.tree_util.tree_map(layout, hp) if per_item else {}

    def ascend(v, f, hp):
      final, history = ascent.ascend(self.ascent, params, v, f, key, hp)
      images, activation, robustness = ascent.evaluate(self.ascent, params, final, f, hp)
      return images, jnp.concatenate([history, activation[..., None]], axis=-1), robustness

    def group(xfh):
      x, f, h = xfh
      if not per_item:
        return ascend(x, f, hp)
      one = lambda v, f, h: jax.tree_util.tree_map(lambda a: a[0], ascend(v[None], f[None], h))
      return jax.vmap(one)(x, f, h)

    if groups == 1:
      out = jax.tree_util.tree_map(lambda a: a[None], group(jax.tree_util.tree_map(
          lambda a: a[0], (x, f, h))))
    else:
      out = jax.lax.map(group, (x, f, h))
    return jax.tree_util.tree_map(lambda a: a.reshape(n, *a.shape[2:]), out)

  def _prepare(self, params):
    """The image-only forward pass's kernels made once per program (`forward.prepare`)."""
    return forward.prepare(self.model.spec, params) if self.settings.image_only_grad else params

  def _python_step(self, params, v, opt_state, keys, filters, step, hp):
    return ascent.step(self.ascent, params, v, opt_state, keys, filters, step, hp)

  def _python_loop(self, params, v, filters, key, hp):
    """The same computation with the step compiled alone and driven from Python."""
    keys = jax.jit(ascent.filter_keys)(key, filters)
    params = jax.jit(self._prepare)(params)
    opt_state = self._init(v, hp)
    history, mean = [], jnp.copy(v)  # `_step` donates `v`'s buffer
    for i in range(self.settings.steps):
      v, opt_state, act = self._step(params, v, opt_state, keys, filters, jnp.int32(i), hp)
      mean = self._average(mean, v, hp)
      history.append(act)
    images, activation, robustness = self._evaluate(params, mean, filters, hp)
    return images, jnp.stack(history + [activation], axis=-1), robustness

  # --- starting points ------------------------------------------------------------------------

  def initial_variables(self, filters: Sequence[int], seed: int) -> np.ndarray:
    """`[N, D, …]` the start of every image: filter f's image d from the generator seeded with
    `(seed, f)` (D = 1) or `(seed, f, d)`, so it does not depend on the other filters."""
    d = self.images_per_filter
    init = self.ascent.param.init
    return np.stack([
        np.stack([init(np.random.default_rng([seed, f] if d == 1 else [seed, f, i]),
                       self.image_shape) for i in range(d)])
        for f in filters]).astype(np.float32)

  def variables_from_images(self, images: np.ndarray) -> np.ndarray:
    """Model-input images `[N, (D,) H, W, C]` → variables `[N, D, …]` that give them back
    (bounded parameterizations: clipped half a grey level inside 0–255); e.g. to start a second
    pass from a first pass's images."""
    images = jnp.asarray(images, jnp.float32)
    if images.ndim == 4:
      images = images[:, None]
    pixels = self.model.spec.input_to_pixels(images)
    return np.asarray(jax.vmap(jax.vmap(self.ascent.param.from_pixels))(pixels), np.float32)

  def score(self, images: np.ndarray, filters: Sequence[int], batch: int = 8
            ) -> tuple[np.ndarray, np.ndarray]:
    """Images made elsewhere, scored as `run` scores its own.

    Args:
      images: model-input images `[N, H, W, C]` at the engine's image shape; image i is scored
        for filter `filters[i]`.
      batch: images per compiled call (the last call padded), so any N compiles one program.

    Returns:
      `(activation [N], robustness [N])`: the true objective of each image as it is, and its
      mean activation under the held-out transforms over that (NaN with no samples).
    """
    images = np.asarray(images, np.float32)
    filters = [int(f) for f in filters]
    if images.ndim != 4 or images.shape[1:] != self.image_shape or not len(images):
      raise JaxvizError(f"images of shape {images.shape} cannot be scored at {self.layer}: "
                        f"expected [N, {', '.join(map(str, self.image_shape))}]")
    if len(filters) != len(images):
      raise JaxvizError(f"{len(images)} images for {len(filters)} filters: give one filter per "
                        "image, in the images' order")
    parse_indices(filters, self.num_filters)  # each filter in the layer
    if self._score is None:
      spec = self.model.spec
      as_pixels = self.ascent._replace(param=param.pixel(spec.neutral_pixel))
      self._score = jax.jit(lambda params, x, f, hp: ascent.evaluate(
          as_pixels, params, as_pixels.param.from_pixels(spec.input_to_pixels(x))[:, None], f,
          hp)[1:], compiler_options=compiler_options())
    hp = self.hyperparameters()
    activation, robustness = [], []
    for start in range(0, len(images), batch):
      rows = range(start, min(start + batch, len(images)))
      idx = np.asarray(chunking.pad(rows, batch))
      a, r = self._score(self.model.params, jax.device_put(images[idx]),
                         jax.device_put(np.asarray(filters, np.int32)[idx]), hp)
      activation.append(np.asarray(a)[:len(rows), 0])
      robustness.append(np.asarray(r)[:len(rows), 0])
    return np.concatenate(activation), np.concatenate(robustness)

  # --- the public call -----------------------------------------------------------------------

  def run(self, filters: str | Sequence[int] = "all", *, seed: int = 0, chunk_size: int = 0,
          memory_budget_mb: int = 0, start_images: np.ndarray | None = None,
          settings: AscentSettings | None = None, progress: Progress = SILENT) -> FilterResult:
    """Optimizes the images of every requested filter.

    Args:
      filters: "all", "0,3,10-19", or a list of indices.
      seed: base random key; results for a filter depend only on it, never on chunking.
      chunk_size: filters per compiled batch; 0 = chosen from the memory budget (`plan`).
      memory_budget_mb: for chunk_size 0; 0 = half the host's available memory (CPU) or 80 % of the
        accelerator's.
      start_images: `[N, H, W, C]` images to start from, one per requested filter in request
        order (e.g. a previous result, for a second pass); None = the parameterization's start.
      settings: other values of the traced hyperparameters (`ascent.HYPERPARAMETERS`) than the
        engine's; no piece the engine has off may be on (one it has on may be 0: the same images
        as off). Compiles nothing new.
    """
    indices = parse_indices(filters, self.num_filters)
    expected = (len(indices), *self.image_shape)
    if start_images is not None and np.shape(start_images)[:1] + np.shape(start_images)[-3:] != \
        expected:
      raise JaxvizError(f"start_images must have shape {expected}, got {np.shape(start_images)}")
    return self._run_items(indices, settings, seed=seed, chunk_size=chunk_size,
                           memory_budget_mb=memory_budget_mb, start_images=start_images,
                           progress=progress)

  def run_settings(self, settings: Sequence[AscentSettings], filters: str | Sequence[int] = "all",
                   *, seed: int = 0, chunk_size: int = 0, memory_budget_mb: int = 0,
                   progress: Progress = SILENT) -> list[FilterResult]:
    """Every requested filter under each of `settings`, all in one compiled program.

    The S·N (setting, filter) items are chunked like filters (`chunk_size`, `memory_budget_mb`
    as in `run`), each item ascending with its setting's hyperparameters, so S settings cost one
    compilation, and other values compile nothing. Each setting may differ from the engine's only
    in traced values (`run`'s `settings`).

    Returns one `FilterResult` per setting, in order: the same images as `run(filters,
    settings=s)`, and as an engine built with `s`, since a piece switched on at 0 is off.
    """
    indices = parse_indices(filters, self.num_filters)
    settings = [self._checked(s) for s in settings]
    if not settings:
      raise JaxvizError("no settings to run")
    n = len(indices)
    every = self._run_items([f for _ in settings for f in indices],
                            [s for s in settings for _ in indices], seed=seed,
                            chunk_size=chunk_size, memory_budget_mb=memory_budget_mb,
                            progress=progress)
    per_item = (every.images, every.activations, every.robustness)
    return [FilterResult(np.asarray(indices), *(a[s * n:(s + 1) * n] for a in per_item))
            for s in range(len(settings))]

  def _run_items(self, filters: Sequence[int],
                 settings: AscentSettings | Sequence[AscentSettings] | None, *, seed: int,
                 chunk_size: int, memory_budget_mb: int,
                 start_images: np.ndarray | None = None,
                 progress: Progress = SILENT) -> FilterResult:
    """Items (a filter, with `settings` shared or one per item, and optionally a start image)
    run chunk by chunk, as `plan` cuts them; their results in item order."""
    chunks, pad_to = self.plan(range(len(filters)), chunk_size, memory_budget_mb)
    sharding = local_sharding()
    if sharding is not None:  # every device takes an equal share of each chunk
      pad_to = chunking.round_up(pad_to, sharding.num_devices)
    parts = []
    for c, chunk in enumerate(chunks):
      items = slice(chunk[0], chunk[-1] + 1)
      parts.append(self.run_chunk(
          filters[items], seed=seed, pad_to=pad_to, sharding=sharding,
          start_images=None if start_images is None else start_images[items],
          settings=settings if settings is None or isinstance(settings, AscentSettings)
          else settings[items]))
      if len(chunks) > 1:
        progress(f"{self.layer}: chunk {c + 1}/{len(chunks)} done")
    return FilterResult(np.asarray(filters),
                        *(np.concatenate([getattr(p, name) for p in parts])
                          for name in ("images", "activations", "robustness")))

  def plan(self, indices: Sequence[int], chunk_size: int,
           memory_budget_mb: int = 0) -> tuple[list[list[int]], int]:
    """Splits filter indices into chunks; returns them and the size each is padded to when run.

    `chunk_size` 0 chooses it (`chunking.resolve_chunk_size`): as many filters as
    `memory_budget_mb` holds (0 = half the host's available memory, 80 % of an accelerator's).
    """
    indices = list(indices)
    chunk_size = chunking.resolve_chunk_size(self.model.spec, self.layer, self.image_shape,
                                             len(indices), chunk_size, memory_budget_mb)
    return chunking.split(indices, chunk_size), chunk_size

  def run_chunk(self, filters: Sequence[int], *, seed: int = 0, pad_to: int | None = None,
                sharding: jax.sharding.Sharding | None = None,
                start_images: np.ndarray | None = None,
                settings: AscentSettings | Sequence[AscentSettings] | None = None
                ) -> FilterResult:
    """Runs one compiled chunk for `filters`, padded to `pad_to` filters by repeating the last.

    `start_images` `[len(filters), H, W, C]` replaces the parameterization's start; `settings`
    other hyperparameter values (see `run`), or a list of them, one per filter: each filter then
    ascends with its own values (`run_settings`; always the compiled chunk program).

    `sharding`, when given, places the chunk's variables and filter indices (split along the
    filter axis) before the call; the compiled program follows it.
    """
    filters = [int(f) for f in filters]
    padded = np.asarray(chunking.pad(filters, pad_to or len(filters)), np.int32)
    pad = len(padded) - len(filters)
    key = jax.random.key(seed)
    if start_images is None:
      v0 = self.initial_variables(padded, seed)
    else:
      v0 = self.variables_from_images(
          np.concatenate([start_images, np.repeat(start_images[-1:], pad, 0)]))
    hp, per_item = self._chunk_hyperparameters(settings, len(filters), pad)
    mesh = sharding.mesh if sharding is not None and sharding.num_devices > 1 else None
    python_loop = self.settings.loop == "python" and not per_item  # a diagnostic: one device
    # Host arrays placed by device_put: no compiled copy or slice on the first call.
    v0, f = jax.device_put((np.asarray(v0, np.float32), padded),
                           sharding if mesh is not None and not python_loop else None)
    if python_loop:
      out = self._python_loop(self.model.params, v0, f, key, hp)
    else:
      per_device = len(padded) // (mesh.devices.size if mesh is not None else 1)
      micro = max(d for d in range(1, per_device + 1)
                  if per_device % d == 0 and d <= (self.micro_batch or per_device))
      out = self._run_chunk(self.model.params, v0, f, key, hp, mesh, micro)
    n = len(filters)
    images, activations, robustness = (np.asarray(a)[:n] for a in out)
    if self.images_per_filter == 1:  # one image per filter: no image axis
      images, activations, robustness = images[:, 0], activations[:, 0], robustness[:, 0]
    return FilterResult(np.asarray(filters), images, activations, robustness)

  def _chunk_hyperparameters(self, settings: AscentSettings | Sequence[AscentSettings] | None,
                             n: int, pad: int) -> tuple[dict[str, jax.Array], bool]:
    """(`hp`, per item): scalars for one setting, or `[n + pad]` arrays for a list of n
    settings (the last repeated over the padding)."""
    if settings is None or isinstance(settings, AscentSettings):
      return self.hyperparameters(self._checked(settings)), False
    if len(settings) != n:
      raise ValueError(f"{len(settings)} settings for a chunk of {n} filters")
    checked = {s: self._checked(s).hyperparameters() for s in set(settings)}
    rows = [checked[s] for s in settings]
    rows += rows[-1:] * pad
    return {k: jax.device_put(np.stack([r[k] for r in rows])) for k in ascent.HYPERPARAMETERS}, True

  def _checked(self, settings: AscentSettings | None) -> AscentSettings:
    """`settings` when they differ from the engine's only in hyperparameter values, with no
    piece on that the engine has off (a piece on at 0 is off); a clear error otherwise."""
    if settings is None:
      return self.settings
    settings.validate()
    changed = [name for name in settings.__dataclass_fields__
               if name not in ascent.HYPERPARAMETERS
               and getattr(settings, name) != getattr(self.settings, name)]
    switched = [name for name in ascent.HYPERPARAMETERS
                if getattr(settings, name) > 0 and not getattr(self.settings, name) > 0
                and name not in ascent.ALWAYS_COMPILED]
    if changed or switched:
      raise JaxvizError(f"these settings need another engine: {', '.join(changed + switched)} "
                        "(only the values of pieces already switched on can change, or be 0)")
    return settings
