"""The gallery job: config in, `WORKDIR/<layer>/{gallery.png, filters.json, images.npy, …}` out.

Everything cheap is checked before any work starts. A layer's filters are cut into chunks that
run on every local device and, with `jax.distributed`, on every process (`jaxviz.distributed`).
Each finished chunk is saved at once (`jaxviz.resume`), so a rerun of the same command after a
crash computes only what is missing; its outputs equal those of an uninterrupted run, whatever
the number of devices and processes. Each layer's outputs are written into a hidden folder and
renamed into place, so a failed run leaves no partial output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import ml_collections

from jaxviz import ascent, chunking, distributed, gallery, objectives, wake
from jaxviz.engine import AscentSettings, FilterEngine, FilterResult
from jaxviz.errors import JaxvizError
from jaxviz.eta import WorkClock
from jaxviz.jobs import frame
from jaxviz.models import get_spec
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.progress import SILENT, Progress
from jaxviz.provision import load_or_train
from jaxviz.ranges import parse_indices, split_names
from jaxviz.resume import RunState, config_record, canonical_json, weights_digest

OUTPUT_FILES = ("gallery.png", "filters.json", "images.npy", "activations.npy", "config.json")


def resolve_layers(spec: ModelSpec, layer: str) -> list[str]:
  """`"conv2d_2"` → `["conv2d_2"]`; `"a,b"` → both; `"conv"` → every conv layer of the model."""
  if layer.strip() == "conv":
    return spec.conv_layer_names
  names = split_names(layer)
  if not names:
    raise JaxvizError(f"no layer given; valid: {', '.join(spec.layer_names)}")
  for name in names:
    spec.layer(name)
  return names


def chunk_size_for(config: ml_collections.ConfigDict, spec: ModelSpec, layer: str,
                   count: int) -> int:
  """Filters per chunk, i.e. per device and compiled call, for `count` filters of `layer`.

  `config.chunk_size`, or for 0 what `FilterEngine.plan` chooses on one device: as many as
  `config.memory_budget_mb` holds (that device's memory by default), capped on CPU. It depends
  on the kind of device, never on how many there are, so neither do the images.
  """
  return chunking.resolve_chunk_size(spec, layer, spec.input_shape_for(config.size), count,
                                     config.chunk_size, config.get("memory_budget_mb", 0))


@dataclasses.dataclass(frozen=True)
class LayerRequest:
  """One layer of a gallery job: its filters, in request order, and filters per chunk."""
  layer: str
  filters: tuple[int, ...]
  chunk_size: int


@dataclasses.dataclass(frozen=True)
class GalleryRequest:
  """A gallery job's config, checked against the model: what `run_layer` computes."""
  spec: ModelSpec
  settings: AscentSettings
  size: int | None
  seed: int
  layers: tuple[LayerRequest, ...]
  wake_passes: tuple[str, ...] = ()  # the second pass's parameterizations; () = no second pass


def check_seed(seed: int) -> None:
  """Seeds key numpy's and JAX's generators, which take whole numbers 0 … 2³² − 1."""
  if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
    raise JaxvizError(f"seed must be a whole number in 0 … {2**32 - 1}, got {seed!r}")


def validate(config: ml_collections.ConfigDict) -> GalleryRequest:
  """Checks the whole config against the model before anything is loaded or computed."""
  spec = get_spec(config.model)
  names = resolve_layers(spec, config.layer)
  if config.size < 0:
    raise JaxvizError(f"size must be ≥ 1 pixel (or 0 for the model's own), got {config.size}")
  spec.input_shape_for(config.size)
  settings = AscentSettings.from_config(config)
  settings.validate()
  check_seed(config.seed)
  wake_passes = (wake.parse_passes(config.get("wake_passes", ",".join(wake.PASSES)))
                 if config.get("wake", False) else ())
  layers = []
  for layer in names:
    filters = parse_indices(config.filters, objectives.num_filters(spec, layer))
    chunk_size = chunk_size_for(config, spec, layer, len(filters))  # e.g. over the budget
    windowed = ascent.step_crop(spec, layer, settings) < 1
    objectives.check_exclude_border(
        ascent.step_map_shape(spec, layer, settings, config.size), layer=layer,
        border=config.get("exclude_border", 0),
        seen_as=f"the map of the steps' windows, crop={settings.crop}" if windowed else "")
    layers.append(LayerRequest(layer, tuple(filters), chunk_size))
  gallery.check_layout(config.max_tiles, config.margin)
  return GalleryRequest(spec, settings, config.size or None, config.seed, tuple(layers),
                        wake_passes)


def run_gallery(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                progress: Progress | None = None, wait: bool = False) -> Path:
  """Runs the gallery job for every layer in `config.layer`; returns the last layer's folder.

  Rerunning the same config into the same `workdir` resumes it: finished layers and chunks are
  kept, the rest computed. One run at a time uses a workdir: another run's is refused, or with
  `wait` waited for. A run that fails before saving anything leaves no run state behind. Under
  `jax.distributed` every process calls this with the same config; process 0 alone writes the
  workdir, and only it reports progress.
  """
  progress = (progress or Progress("gallery")) if distributed.is_leader() else SILENT
  state = RunState(workdir, report=progress)
  try:
    return _run_gallery(config, state, progress, wait)
  except BaseException:
    state.abandon()
    raise
  finally:
    state.release()


def _run_gallery(config: ml_collections.ConfigDict, state: RunState, progress: Progress,
                 wait: bool) -> Path:
  request = validate(config)
  spec = request.spec
  root = state.workdir

  def open_workdir():
    frame.prepare_workdir(root)
    state.lock(wait)
    return state.check_config(config)

  resuming = distributed.on_leader(open_workdir)
  distributed.check_agreement("config", canonical_json(config_record(config)))
  progress(f"loading {spec.name} weights")
  model = distributed.on_every_process(lambda: load_or_train(
      config.model, config.weights or None, dataset=config.dataset))
  weights = weights_digest(model.params)
  distributed.check_agreement("weights", weights)
  distributed.on_leader(lambda: state.start(config, weights))
  progress(f"computing on {distributed.describe()}"
           + (f"; resuming the run in {root}" if resuming else ""))
  out = root
  clock = WorkClock()  # the last computed layer's seconds per chunk
  for i, wanted in enumerate(request.layers):
    out = run_layer(model, wanted, request, config, state,
                    lambda message: progress(f"{wanted.layer} ({i + 1}/{len(request.layers)}): "
                                             f"{message}"),
                    clock)
  return out


def run_layer(model: Model, wanted: LayerRequest, request: GalleryRequest,
              config: ml_collections.ConfigDict, state: RunState,
              progress: Callable[[str], None], clock: WorkClock | None = None) -> Path:
  """Computes the missing chunks of one layer, then (process 0) writes its outputs.

  Progress lines estimate the time left for the layer in chunks: from this layer's finished
  chunks once there are any, before that from `clock`, the previous layer's. The cost of a
  chunk follows its layer more than its FLOP (compiling and per-image work weigh much on CPU),
  so the previous layer's rate is the best guess; when the layer ends, `clock` holds its rate.
  """
  layer, indices = wanted.layer, list(wanted.filters)
  engine = FilterEngine(model, layer, request.settings, request.size)
  waker = wake.Waker(engine, passes=request.wake_passes) if request.wake_passes else None
  folder = state.workdir / layer

  def begin():
    frame.remove_staging(folder)
    return state.begin_layer(layer, indices, wanted.chunk_size, OUTPUT_FILES,
                             engine.image_shape, request.settings.steps,
                             engine.images_per_filter)

  plan = distributed.on_leader(begin)
  if plan["done"]:
    progress(f"already done → {folder}")
    return folder
  chunks = chunking.split(indices, plan["chunk_size"])
  todo = plan["todo"]
  previous = clock or WorkClock()
  own = WorkClock()

  def eta(left: int) -> str:
    text = (own if own.seconds else previous).describe(left)
    return f"; {text}" if text else ""

  if len(todo) < len(chunks):
    progress(f"resuming: {len(chunks) - len(todo)}/{len(chunks)} chunks already done, "
             f"computing {len(todo)}" + eta(len(todo)))
  else:
    progress(f"optimizing {len(indices)} filters in {len(chunks)} chunk"
             + (f"s of ≤{plan['chunk_size']}" if len(chunks) > 1 else "") + eta(len(todo)))
  done = len(chunks) - len(todo)
  start = time.perf_counter()
  for index, result in distributed.compute_chunks(engine, chunks, todo, plan["chunk_size"],
                                                 request.seed):
    if waker is not None:  # process 0 alone: the second pass for dead filters (jaxviz.wake)
      result = waker.revive(result, request.seed)
    own.record(1, time.perf_counter() - start)
    start = time.perf_counter()
    state.save_chunk(layer, index, result)
    done += 1
    left = len(chunks) - done
    progress(f"chunk {index + 1}/{len(chunks)} done"
             + (f", {left} to go{eta(left)}" if left else ""))
  if clock is not None and own.seconds:
    clock.work, clock.seconds = own.work, own.seconds

  def assemble():
    result = state.layer_result(layer, indices, plan["chunk_size"])
    records = write_layer(folder, model, result, request.settings, config)
    state.finish_layer(layer)
    return gallery.summary_line(records)

  summary = distributed.on_leader(assemble)
  progress(f"{summary} → {folder}")
  return folder


def layer_summary(folder: Path) -> str:
  """`"49/50 live, median robustness 0.92"` from a finished layer folder's filters.json."""
  return gallery.summary_line(json.loads((folder / "filters.json").read_text()))


def write_layer(folder: Path, model: Model, result: FilterResult, settings: AscentSettings,
                config: ml_collections.ConfigDict) -> list[dict]:
  """Writes one layer's outputs (`frame.write_folder`: hidden, then renamed to `folder`);
  returns the filters.json records."""
  records = gallery.filter_records(result.filters, result.final_activations,
                                   result.filter_robustness, config.get("preset", ""),
                                   result.filter_woken)
  picture = gallery.picture(model.spec.to_display(result.images), records,
                            max_tiles=config.max_tiles, margin=config.margin,
                            labels=config.labels, normalize=not settings.pixels_in_range)
  frame.write_folder(folder, {"gallery.png": picture, "filters.json": records,
                              "images.npy": result.images,
                              "activations.npy": result.activations}, config)
  return records
