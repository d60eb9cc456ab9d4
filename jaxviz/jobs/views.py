"""The view commands: config in, pictures (PNG) and raw arrays (.npy) under WORKDIR out.

    run_weights(config, workdir)        → WORKDIR/weights/<layer>/
    run_feature_maps(config, workdir)   → WORKDIR/feature-maps/<image>/
    run_classes(config, workdir)        → WORKDIR/classes/
    run_gradcam(config, workdir)        → WORKDIR/gradcam/
    run_attribution(config, workdir)    → WORKDIR/<method>/

Each is a request (what to show, checked against the model) and a computation, run in the one
job frame (`jaxviz.jobs.frame`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import ml_collections
import numpy as np

from jaxviz import chunking, gallery, images as images_lib, render
from jaxviz.engine import AscentSettings
from jaxviz.errors import JaxvizError, unknown
from jaxviz.jobs import frame
from jaxviz.jobs.gallery import check_seed, resolve_layers
from jaxviz.models import get_spec
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.progress import Progress
from jaxviz.views import attribution as attribution_lib
from jaxviz.views import classes as classes_lib
from jaxviz.views import feature_maps as feature_maps_lib
from jaxviz.views import gradcam as gradcam_lib
from jaxviz.views import weights as weights_lib

DISPLAY_SIDE = 112   # input-sized tiles (digits, class images) are enlarged to this many pixels


def _nothing() -> None:
  """For views with no checks before a model spec is at hand."""


# ---- weights -----------------------------------------------------------------------------------

def run_weights(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                progress: Progress | None = None) -> Path:
  """Weight pictures of `config.layer` (default: the first conv); returns the last folder."""

  def compute(model: Model, layers: list[str]):
    for layer in layers:
      view = weights_lib.filter_weights(model, layer, config.filters)
      files = {"channels.png": weights_lib.channel_grids(view, labels=config.labels),
               "kernel.npy": view.kernel,
               "weights.json": {"layer": view.layer, "filters": view.filters.tolist(),
                                "kernel_shape": list(view.kernel.shape),
                                "low": view.low, "high": view.high}}
      if view.kernel.shape[2] == model.spec.input_shape[-1]:
        files["filters.png"] = weights_lib.filters_picture(model.spec, view,
                                                           labels=config.labels)
      yield f"weights/{view.layer}", files, f"{view.layer}: {len(view.filters)} filters"

  return frame.run(config, workdir, progress or Progress("weights"), check=_nothing,
                   request=lambda spec: _weights_layers(spec, config), compute=compute)


# ---- feature maps ------------------------------------------------------------------------------

def run_feature_maps(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                     progress: Progress | None = None) -> Path:
  """Feature-map grids of `config.layer` for every image of `config.images`."""

  def check():
    _check_images(config)
    if config.max_channels < 0:
      raise JaxvizError(f"max_channels must be ≥ 0 (0 = all), got {config.max_channels}")

  def compute(model: Model, layers: list[str]):
    batch = _images(config, model)
    maps = feature_maps_lib.feature_maps(model, batch.inputs, layers)
    folders = unique_names(batch.names)
    files = {}
    for i, folder in enumerate(folders):
      files[f"{folder}/input.png"] = _input_tile(batch.pixels[i])
      for layer in layers:
        files[f"{folder}/{layer}.png"] = feature_maps_lib.feature_map_grid(
            maps[layer][i], config.max_channels, labels=config.labels)
        files[f"{folder}/{layer}.npy"] = maps[layer][i]
    files["feature_maps.json"] = {
        "images": batch.names, "labels": batch.labels, "folders": folders,
        "layers": {layer: list(maps[layer].shape[1:]) for layer in layers}}
    yield "feature-maps", files, f"{len(batch)} images × {len(layers)} layers ({', '.join(layers)})"

  return frame.run(config, workdir, progress or Progress("feature-maps"), check=check,
                   request=lambda spec: feature_maps_lib.resolve_layers(spec, config.layer),
                   compute=compute)


# ---- class images ------------------------------------------------------------------------------

def run_classes(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                progress: Progress | None = None) -> Path:
  """Class-output images for `config.classes`, with the model's verdict on each."""
  progress = progress or Progress("classes")
  settings = AscentSettings.from_config(config)

  def request(spec: ModelSpec) -> list[int]:
    classes = classes_lib.parse_classes(spec, config.classes)
    _check_fits(spec, config, 1)
    return classes

  def compute(model: Model, classes: list[int]):
    progress(f"maximizing {model.spec.logits_layer} logits, {config.passes} pass(es) of "
             f"{settings.steps} steps")
    result = classes_lib.maximize_classes(
        model, classes, settings, passes=config.passes, seed=config.seed,
        size=config.size or None, chunk_size=config.chunk_size, progress=progress)
    bounded = settings.pixels_in_range
    shown = render.optimized_tiles(model.spec, result.images, bounded)
    reread = _logits(model, model.spec.preprocess(shown.astype(np.float32))).argmax(-1)
    labels = ([f"{c}->{p}" for c, p in zip(result.classes, result.predicted)]
              if config.labels else None)
    first_labels = [str(c) for c in result.classes] if config.labels else None
    files = {
        "classes.png": _tile_grid(shown, config.margin, labels),
        "first_pass.png": _tile_grid(render.optimized_tiles(model.spec, result.first_pass, bounded),
                                     config.margin, first_labels),
        "images.npy": result.images, "logits.npy": result.logits,
        "activations.npy": result.activations,
        "classes.json": [
            {"class": int(c), "predicted": int(p), "probability": float(q),
             "logit": float(z[c]), "predicted_from_png": int(r)}
            for c, p, q, z, r in zip(result.classes, result.predicted, result.probabilities,
                                     result.logits, reread)],
    }
    for c, image in zip(result.classes, shown):
      files[f"class_{c}.png"] = image
    hits = int(np.sum(result.predicted == result.classes))
    yield "classes", files, f"{hits}/{len(result.classes)} images classified as their own class"

  return frame.run(config, workdir, progress, check=lambda: check_classes(config),
                   request=request, compute=compute)


def check_classes(config: ml_collections.ConfigDict) -> None:
  """The class view's checks that need no model: its ascent settings, seed, passes, margin."""
  AscentSettings.from_config(config).validate()
  check_seed(config.seed)
  if config.passes < 1:
    raise JaxvizError(f"passes must be ≥ 1, got {config.passes}")
  gallery.check_layout(0, config.margin)


# ---- Grad-CAM ----------------------------------------------------------------------------------

def run_gradcam(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                progress: Progress | None = None) -> Path:
  """Grad-CAM overlays for every image of `config.images`."""

  def check():
    _check_images(config)
    if config.weighting not in gradcam_lib.WEIGHTINGS:
      raise unknown("Grad-CAM weighting", config.weighting, gradcam_lib.WEIGHTINGS)
    if not 0 <= config.alpha <= 1:
      raise JaxvizError(f"alpha must be in [0, 1], got {config.alpha}")

  def compute(model: Model, _):
    batch = _images(config, model)
    result = gradcam_lib.gradcam(
        model, batch.inputs, classes=config.classes or None, top_k=config.top_k,
        layer=config.layer or None, weighting=config.weighting, batch_size=config.batch_size)
    probabilities = result.probabilities
    tiles, labels = [], []
    for i in range(len(batch)):
      tiles.append([_input_rgb_tile(batch.pixels[i])] +
                   [_enlarge(render.overlay(batch.pixels[i], heat, config.alpha))
                    for heat in result.heatmaps[i]])
      labels.append([_caption(batch, i)] + [f"{c} {p:.2f}"
                                        for c, p in zip(result.classes[i], probabilities[i])])
    files = {
        "gradcam.png": render.rows(tiles, labels=labels),
        "heatmaps.npy": result.heatmaps, "logits.npy": result.logits,
        "gradcam.json": {"layer": result.layer, "weighting": config.weighting, "images": [
            {"image": name, "label": label,
             "classes": [{"class": int(c), "probability": float(p)} for c, p in zip(cs, ps)]}
            for name, label, cs, ps in zip(batch.names, batch.labels, result.classes,
                                           probabilities)]},
    }
    yield ("gradcam", files,
           f"{len(batch)} images × {result.classes.shape[1]} classes at {result.layer}")

  return frame.run(config, workdir, progress or Progress("gradcam"), check=check,
                   request=lambda spec: _gradcam_request(spec, config), compute=compute)


# ---- saliency, guided backprop, deconvnet ------------------------------------------------------

def run_attribution(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                    progress: Progress | None = None) -> Path:
  """Saliency, guided backprop or deconvnet maps for every image of `config.images`."""
  method = attribution_lib.check_method(config.method)

  def compute(model: Model, _):
    batch = _images(config, model)
    result = attribution_lib.attribution(
        model, batch.inputs, method, classes=config.classes or None, top_k=config.top_k,
        layer=config.layer or None, filters=config.filters, batch_size=config.batch_size)
    prefix = "class " if not config.layer else "filter "
    tiles, labels = [], []
    for i in range(len(batch)):
      row = [render.to_rgb(attribution_lib.display(model.spec, method, g)).astype(np.uint8)
             for g in result.maps[i]]
      tiles.append([_input_rgb_tile(batch.pixels[i])] + [_enlarge(t) for t in row])
      labels.append([_caption(batch, i)] + [f"{prefix}{t}" for t in result.targets[i]])
    files = {
        f"{method}.png": render.rows(tiles, labels=labels),
        "maps.npy": result.maps, "scores.npy": result.scores,
        "attribution.json": {"method": method, "layer": result.layer,
                             "target": "filter" if config.layer else "class", "images": [
            {"image": name, "label": label, "targets": [int(t) for t in ts],
             "scores": [float(s) for s in ss]}
            for name, label, ts, ss in zip(batch.names, batch.labels, result.targets,
                                           result.scores)]},
    }
    yield method, files, f"{len(batch)} images × {result.targets.shape[1]} targets"

  return frame.run(config, workdir, progress or Progress(method),
                   check=lambda: _check_images(config),
                   request=lambda spec: _attribution_request(spec, config), compute=compute)


# ---- shared steps ------------------------------------------------------------------------------

def _weights_layers(spec: ModelSpec, config: ml_collections.ConfigDict) -> list[str]:
  layers = ([weights_lib.first_conv(spec)] if not config.layer.strip()
            else resolve_layers(spec, config.layer))
  for layer in layers:
    weights_lib.check_request(spec, layer, config.filters)
  return layers


def _gradcam_request(spec: ModelSpec, config: ml_collections.ConfigDict) -> None:
  classes_lib.require_top(spec)
  gradcam_lib.check_layer(spec, config.layer or gradcam_lib.default_layer(spec))
  classes_lib.class_targets(spec, config.classes or None, config.top_k)


def _attribution_request(spec: ModelSpec, config: ml_collections.ConfigDict) -> None:
  attribution_lib.targets(spec, config.classes or None, config.top_k, config.layer or None,
                          config.filters)


def _check_images(config: ml_collections.ConfigDict) -> None:
  spec = get_spec(config.model)
  if config.size < 0:
    raise JaxvizError(f"size must be ≥ 0 pixels (0 = the model's default), got {config.size}")
  _check_fits(spec, config, 1)
  images_lib.check_files(config.images)


def _check_fits(spec: ModelSpec, config: ml_collections.ConfigDict, images: int) -> None:
  """Refuses a size (and batch) whose activations through the whole model exceed the memory
  budget, before anything is computed."""
  batch = config.get("batch_size", 0)
  chunking.check_images_fit(spec, spec.layer_names[-1], spec.input_shape_for(config.size or None),
                            min(images, batch) if batch else images,
                            config.get("memory_budget_mb", 0), fix="lower size"
                            + (" or batch_size" if "batch_size" in config else ""))


def _images(config: ml_collections.ConfigDict, model: Model) -> images_lib.ImageBatch:
  batch = images_lib.load_images(config.images, model.spec, config.size or None,
                                 invert=config.invert)
  _check_fits(model.spec, config, len(batch))
  return batch


def _logits(model: Model, x: np.ndarray) -> np.ndarray:
  return np.asarray(model.features(x, model.spec.logits_layer, output="pre_activation"))


def _caption(batch: images_lib.ImageBatch, i: int) -> str:
  """`digits 3 (label 4)` or the file name."""
  name = batch.names[i].replace(":", " ")
  return name if batch.labels[i] is None else f"{name} ({batch.labels[i]})"


def _enlarge(tile: np.ndarray) -> np.ndarray:
  return render.enlarge(tile, DISPLAY_SIDE)


def _input_tile(pixels: np.ndarray) -> np.ndarray:
  return _enlarge(render.pixels_uint8(pixels))


def _input_rgb_tile(pixels: np.ndarray) -> np.ndarray:
  return _input_tile(render.to_rgb(pixels))


def _tile_grid(tiles: np.ndarray, margin: int, labels) -> np.ndarray:
  return render.stitch(np.stack([_enlarge(t) for t in tiles]), margin, labels)


def unique_names(names: list[str]) -> list[str]:
  """Folder-safe, distinct names: `digits:3` → `digits-3`, `bird.jpg` → `bird`."""
  out, seen = [], {}
  for name in names:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(name.replace(":", "-")).stem) or "image"
    seen[stem] = seen.get(stem, 0) + 1
    out.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
  return out
