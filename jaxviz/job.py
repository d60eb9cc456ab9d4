"""The gallery job: config in, `WORKDIR/<layer>/{gallery.png, filters.json, images.npy, …}` out.

Everything cheap is checked before any work starts, and each layer's outputs are written into a
hidden folder first and renamed into place at the end, so a failed run leaves no partial output.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import ml_collections
import numpy as np

from jaxviz import gallery, objectives
from jaxviz.engine import AscentSettings, FilterEngine, FilterResult, parse_filters
from jaxviz.errors import JaxvizError
from jaxviz.loading import load_model
from jaxviz.models import get_spec
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.progress import Progress

OUTPUT_FILES = ("gallery.png", "filters.json", "images.npy", "activations.npy", "config.json")


def resolve_layers(spec: ModelSpec, layer: str) -> list[str]:
  """`"conv2d_2"` → `["conv2d_2"]`; `"a,b"` → both; `"conv"` → every conv layer of the model."""
  if layer.strip() == "conv":
    return spec.conv_layer_names
  names = [name.strip() for name in layer.split(",") if name.strip()]
  if not names:
    raise JaxvizError(f"no layer given; valid: {', '.join(spec.layer_names)}")
  for name in names:
    spec.layer(name)
  return names


def prepare_workdir(workdir: str | os.PathLike) -> Path:
  """Creates `workdir` and checks it is writable, before any work is done."""
  path = Path(workdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    raise JaxvizError(f"cannot write to workdir {str(path)!r}: {e.strerror or e}. "
                      "Choose a writable --workdir.") from None
  return path


def validate(config: ml_collections.ConfigDict) -> tuple[ModelSpec, list[str], AscentSettings]:
  """Checks the whole config against the model before anything is loaded or computed."""
  spec = get_spec(config.model)
  layers = resolve_layers(spec, config.layer)
  if config.size <= 0:
    raise JaxvizError(f"size must be ≥ 1 pixel, got {config.size}")
  spec.input_shape_for(config.size)
  settings = AscentSettings.from_config(config)
  settings.validate()
  for layer in layers:
    parse_filters(config.filters, objectives.num_filters(spec, layer))
  if config.max_tiles < 0 or config.margin < 0:
    raise JaxvizError("max_tiles and margin must be ≥ 0")
  return spec, layers, settings


def run_gallery(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                progress: Progress | None = None) -> Path:
  """Runs the gallery job for every layer in `config.layer`; returns the last layer's folder."""
  progress = progress or Progress("gallery")
  spec, layers, settings = validate(config)
  root = prepare_workdir(workdir)
  progress(f"loading {spec.name} weights")
  model = load_model(config.model, config.weights or None, dataset=config.dataset,
                     train_if_missing=True)
  out = root
  for i, layer in enumerate(layers):
    progress(f"{layer} ({i + 1}/{len(layers)}): optimizing")
    engine = FilterEngine(model, layer, settings, config.size)
    result = engine.run(config.filters, seed=config.seed, chunk_size=config.chunk_size,
                        progress=progress)
    out = write_layer(root / layer, model, result, config)
    dead = int(np.sum(~(result.final_activations > 0)))
    progress(f"{layer}: {len(result.filters)} filters, {dead} dead → {out}")
  return out


def write_layer(folder: Path, model: Model, result: FilterResult,
                config: ml_collections.ConfigDict) -> Path:
  """Writes one layer's outputs into a hidden folder, then renames it to `folder`."""
  records = gallery.filter_records(result.filters, result.final_activations)
  picture = gallery.render(model.spec.to_display(result.images), records,
                           max_tiles=config.max_tiles, margin=config.margin, labels=config.labels)
  staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
  staging.chmod(0o755)
  try:
    (staging / "gallery.png").write_bytes(gallery.png_bytes(picture))
    (staging / "filters.json").write_bytes(gallery.records_json(records))
    np.save(staging / "images.npy", result.images.astype(np.float32))
    np.save(staging / "activations.npy", result.activations.astype(np.float32))
    (staging / "config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    replace_dir(staging, folder)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return folder


def replace_dir(new: Path, target: Path) -> None:
  """Moves folder `new` to `target`, replacing an existing `target` as one rename."""
  if target.exists():
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.replace(new, target)
