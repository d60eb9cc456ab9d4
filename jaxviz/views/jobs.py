"""The view commands: config in, pictures (PNG) and raw arrays (.npy) under WORKDIR out.

    run_weights(config, workdir)        → WORKDIR/weights/<layer>/
    run_feature_maps(config, workdir)   → WORKDIR/feature-maps/<image>/
    run_classes(config, workdir)        → WORKDIR/classes/
    run_gradcam(config, workdir)        → WORKDIR/gradcam/
    run_attribution(config, workdir)    → WORKDIR/<method>/

Cheap checks (image files, method names, numbers) run before the model is loaded; each
command's folder is written hidden first and renamed into place, so a failed run leaves no
partial output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import ml_collections
import numpy as np

from jaxviz import chunking, gallery, images as images_lib, render
from jaxviz.engine import AscentSettings
from jaxviz.errors import JaxvizError, unknown
from jaxviz.job import prepare_workdir, replace_dir, resolve_layers
from jaxviz.models import get_spec
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.progress import Progress
from jaxviz.provision import load_or_train
from jaxviz.views import attribution as attribution_lib
from jaxviz.views import classes as classes_lib
from jaxviz.views import feature_maps as feature_maps_lib
from jaxviz.views import gradcam as gradcam_lib
from jaxviz.views import weights as weights_lib

DISPLAY_SIDE = 112   # input-sized tiles (digits, class images) are enlarged to this many pixels


# ---- the commands ------------------------------------------------------------------------------

def run_weights(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                progress: Progress | None = None) -> Path:
  """Weight pictures of `config.layer` (default: the first conv); returns the last folder."""
  progress = progress or Progress("weights")
  _early(config, lambda spec: _weights_layers(spec, config))
  root = prepare_workdir(workdir)
  model = _load(config, progress)
  layers = _weights_layers(model.spec, config)
  views = [weights_lib.filter_weights(model, layer, config.filters) for layer in layers]
  out = root
  for view in views:
    files = {"channels.png": weights_lib.channel_grids(view, labels=config.labels),
             "kernel.npy": view.kernel,
             "weights.json": {"layer": view.layer, "filters": view.filters.tolist(),
                              "kernel_shape": list(view.kernel.shape),
                              "low": view.low, "high": view.high}}
    if view.kernel.shape[2] == model.spec.input_shape[-1]:
      files["filters.png"] = weights_lib.filters_picture(model.spec, view, labels=config.labels)
    out = write_folder(root / "weights" / view.layer, files, config)
    progress(f"{view.layer}: {len(view.filters)} filters → {out}")
  return out


def run_feature_maps(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                     progress: Progress | None = None) -> Path:
  """Feature-map grids of `config.layer` for every image of `config.images`."""
  progress = progress or Progress("feature-maps")
  _check_images(config)
  if config.max_channels < 0:
    raise JaxvizError(f"max_channels must be ≥ 0 (0 = all), got {config.max_channels}")
  _early(config, lambda spec: feature_maps_lib.resolve_layers(spec, config.layer))
  root = prepare_workdir(workdir)
  model = _load(config, progress)
  batch = _images(config, model)
  layers = feature_maps_lib.resolve_layers(model.spec, config.layer)
  maps = feature_maps_lib.feature_maps(model, batch.inputs, layers)
  files = {}
  for i, folder in enumerate(unique_names(batch.names)):
    files[f"{folder}/input.png"] = _input_tile(batch.pixels[i])
    for layer in layers:
      files[f"{folder}/{layer}.png"] = feature_maps_lib.feature_map_grid(
          maps[layer][i], config.max_channels, labels=config.labels)
      files[f"{folder}/{layer}.npy"] = maps[layer][i]
  files["feature_maps.json"] = {
      "images": batch.names, "labels": batch.labels, "folders": unique_names(batch.names),
      "layers": {layer: list(maps[layer].shape[1:]) for layer in layers}}
  out = write_folder(root / "feature-maps", files, config)
  progress(f"{len(batch)} images × {len(layers)} layers ({', '.join(layers)}) → {out}")
  return out


def run_classes(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                progress: Progress | None = None) -> Path:
  """Class-output images for `config.classes`, with the model's verdict on each."""
  progress = progress or Progress("classes")
  settings = AscentSettings.from_config(config)
  settings.validate()
  if config.passes < 1:
    raise JaxvizError(f"passes must be ≥ 1, got {config.passes}")
  gallery.check_layout(0, config.margin)
  _early(config, lambda spec: classes_lib.parse_classes(spec, config.classes))
  root = prepare_workdir(workdir)
  model = _load(config, progress)
  classes_lib.parse_classes(model.spec, config.classes)
  size = config.size or None
  _check_fits(model.spec, config, 1)
  progress(f"maximizing {model.spec.logits_layer} logits, {config.passes} pass(es) of "
           f"{settings.steps} steps")
  result = classes_lib.maximize_classes(
      model, config.classes, settings, passes=config.passes, seed=config.seed, size=size,
      chunk_size=config.chunk_size, progress=progress)
  bounded = settings.pixels_in_range
  shown = _deprocessed(model, result.images, bounded)
  reread = _logits(model, model.spec.preprocess(shown.astype(np.float32))).argmax(-1)
  labels = ([f"{c}->{p}" for c, p in zip(result.classes, result.predicted)]
            if config.labels else None)
  first_labels = [str(c) for c in result.classes] if config.labels else None
  files = {
      "classes.png": _tile_grid(shown, config.margin, labels),
      "first_pass.png": _tile_grid(_deprocessed(model, result.first_pass, bounded),
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
  out = write_folder(root / "classes", files, config)
  hits = int(np.sum(result.predicted == result.classes))
  progress(f"{hits}/{len(result.classes)} images classified as their own class → {out}")
  return out


def run_gradcam(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                progress: Progress | None = None) -> Path:
  """Grad-CAM overlays for every image of `config.images`."""
  progress = progress or Progress("gradcam")
  _check_images(config)
  if config.weighting not in gradcam_lib.WEIGHTINGS:
    raise unknown("Grad-CAM weighting", config.weighting, gradcam_lib.WEIGHTINGS)
  if not 0 <= config.alpha <= 1:
    raise JaxvizError(f"alpha must be in [0, 1], got {config.alpha}")
  _early(config, lambda spec: _gradcam_request(spec, config))
  root = prepare_workdir(workdir)
  model = _load(config, progress)
  _gradcam_request(model.spec, config)
  batch = _images(config, model)
  result = gradcam_lib.gradcam(
      model, batch.inputs, classes=config.classes or None, top_k=config.top_k,
      layer=config.layer or None, weighting=config.weighting, batch_size=config.batch_size)
  probabilities = result.probabilities
  tiles, labels = [], []
  for i in range(len(batch)):
    tiles.append([_enlarge(render.pixels_uint8(render.to_rgb(batch.pixels[i])))] +
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
  out = write_folder(root / "gradcam", files, config)
  progress(f"{len(batch)} images × {result.classes.shape[1]} classes at {result.layer} → {out}")
  return out


def run_attribution(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                    progress: Progress | None = None) -> Path:
  """Saliency, guided backprop or deconvnet maps for every image of `config.images`."""
  progress = progress or Progress(config.method)
  method = attribution_lib.check_method(config.method)
  _check_images(config)
  _early(config, lambda spec: _attribution_request(spec, config))
  root = prepare_workdir(workdir)
  model = _load(config, progress)
  _attribution_request(model.spec, config)
  batch = _images(config, model)
  result = attribution_lib.attribution(
      model, batch.inputs, method, classes=config.classes or None, top_k=config.top_k,
      layer=config.layer or None, filters=config.filters, batch_size=config.batch_size)
  prefix = "class " if not config.layer else "filter "
  tiles, labels = [], []
  for i in range(len(batch)):
    row = [render.to_rgb(attribution_lib.display(model.spec, method, g)).astype(np.uint8)
           for g in result.maps[i]]
    tiles.append([_enlarge(render.pixels_uint8(render.to_rgb(batch.pixels[i])))] +
                 [_enlarge(t) for t in row])
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
  out = write_folder(root / method, files, config)
  progress(f"{len(batch)} images × {result.targets.shape[1]} targets → {out}")
  return out


# ---- shared steps ------------------------------------------------------------------------------

def _load(config: ml_collections.ConfigDict, progress: Progress) -> Model:
  progress(f"loading {config.model} weights")
  return load_or_train(config.model, config.weights or None, dataset=config.dataset)


def _early(config: ml_collections.ConfigDict, check) -> None:
  """Runs `check(spec)` on the registered spec before any weights are loaded (or trained),
  when the weights cannot change the answer: for models registered with their classifier top.
  One registered without it (VGG16's base) may load with a top, so its checks wait."""
  spec = get_spec(config.model)
  if spec.num_classes > 0:
    check(spec)


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


def _deprocessed(model: Model, images: np.ndarray, bounded: bool = False) -> np.ndarray:
  """Optimized images `[N, H, W, C]` → `[N, H, W, C]` uint8: their true pixels when the
  parameterization keeps them in range (`bounded`), else the seeds' normalized display."""
  show = render.pixels_uint8 if bounded else render.deprocess
  return np.stack([show(x) for x in model.spec.to_display(images)])


def _caption(batch: images_lib.ImageBatch, i: int) -> str:
  """`digits 3 (label 4)` or the file name."""
  name = batch.names[i].replace(":", " ")
  return name if batch.labels[i] is None else f"{name} ({batch.labels[i]})"


def _enlarge(tile: np.ndarray) -> np.ndarray:
  return render.enlarge(tile, DISPLAY_SIDE)


def _input_tile(pixels: np.ndarray) -> np.ndarray:
  return _enlarge(render.pixels_uint8(pixels))


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


def write_folder(folder: Path, files: dict, config: ml_collections.ConfigDict) -> Path:
  """Writes `files` (relative name → uint8 picture `[H, W, 1 or 3]` for .png, array for .npy,
  JSON-able value for .json) and config.json into a hidden folder, then renames it to `folder`."""
  folder.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
  staging.chmod(0o755)
  try:
    for name, value in {**files, "config.json": config.to_dict()}.items():
      path = staging / name
      path.parent.mkdir(parents=True, exist_ok=True)
      if name.endswith(".png"):
        path.write_bytes(render.png_bytes(np.asarray(value, np.uint8)))
      elif name.endswith(".npy"):
        np.save(path, np.asarray(value, np.float32) if np.asarray(value).dtype.kind == "f"
                else np.asarray(value))
      else:
        path.write_text(json.dumps(value, indent=1) + "\n")
    replace_dir(staging, folder)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return folder
