"""The atlas job: config in, `WORKDIR/atlas/index.html` (a static site) out.

    run_atlas(config, workdir)

1. Every requested conv layer through the gallery job (`jaxviz.jobs.gallery.run_gallery`, with the
   gallery fields of the config): chunked, resumable, written to `WORKDIR/<layer>/`.
2. For models with a classifier top, the class images (`jaxviz.jobs.views.run_classes`),
   written to `WORKDIR/classes/`; kept when a previous run made them with the same config.
3. For models with a dataset (LeNet: `config.dataset`), the `config.examples` dataset images
   that excite each filter most, from one forward pass over the split.
4. The site, built in a hidden folder and renamed to `WORKDIR/atlas/` (`frame.staged_folder`);
   skipped when the site there was built from the same results, config and site format.

Everything cheap is checked before anything is written. One atlas run at a time uses a workdir.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import ml_collections
import numpy as np

import jaxviz
from jaxviz import data
from jaxviz.atlas import site as site_lib
from jaxviz.configs import seed as seed_config
from jaxviz.configs import views_classes as classes_config_module
from jaxviz.ascent import LOOPS
from jaxviz.engine import AscentSettings
from jaxviz.errors import JaxvizError, unknown
from jaxviz.jobs import frame, gallery as gallery_job, views as view_jobs
from jaxviz.loading import default_weights
from jaxviz.models import layers as L
from jaxviz.models.spec import Model, ModelSpec, summarize
from jaxviz.progress import Progress
from jaxviz.resume import STATE_DIR, canonical_json, config_record, hold_lock
from jaxviz.views import classes as classes_lib
from jaxviz.views import examples as examples_lib
from jaxviz.views import weights as weights_lib

SITE = "atlas"
LOCK = ".atlas-lock"


# ---- configs -----------------------------------------------------------------------------------

def gallery_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The gallery job's config: every gallery field, from `config`. The same as
  `jaxviz gallery --config default --config.layer=conv` with the same overrides, so either
  command resumes the other's galleries."""
  out = seed_config.get_config()
  for key in out.keys():
    out[key] = config[key]
  return out


def classes_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The classes view's config: its own defaults (`views_classes`), with every field it shares
  with `config` taken from there, and `loop` from `class_loop`."""
  out = classes_config_module.get_config()
  for key in out.keys():
    if key in config and key not in ("loop", "labels"):
      out[key] = config[key]
  out.loop = config.class_loop
  return out


def wants_classes(config: ml_collections.ConfigDict) -> bool:
  return bool(str(config.classes).strip())


def dataset_name(config: ml_collections.ConfigDict, spec: ModelSpec) -> str | None:
  """The dataset the examples come from: LeNet's `config.dataset`; None for models without
  one (VGG16) or with `examples` 0."""
  return config.dataset if spec.name == "lenet" and config.examples > 0 else None


# ---- checks ------------------------------------------------------------------------------------

def validate(config: ml_collections.ConfigDict) -> tuple[ModelSpec, list[str]]:
  """Checks everything that can be checked before weights are loaded or anything written."""
  request = gallery_job.validate(gallery_config(config))
  spec, layers = request.spec, [wanted.layer for wanted in request.layers]
  for layer in layers:
    if not isinstance(spec.layer(layer), L.Conv):
      raise JaxvizError(f"layer {layer!r} is not a conv layer; the atlas shows conv layers: "
                        f"{', '.join(spec.conv_layer_names)} (layer=conv for all)")
  examples_lib.check_request(config.examples, config.example_rank)
  if config.example_split not in data.SPLITS:
    raise unknown("example_split", config.example_split, data.SPLITS)
  if spec.name == "lenet" and config.dataset not in data.LOADERS:
    raise unknown("dataset", config.dataset, sorted(data.LOADERS))
  if wants_classes(config):
    view_config = classes_config(config)
    if config.class_loop not in LOOPS:
      raise unknown("class_loop", config.class_loop, LOOPS)
    view_jobs.check_classes(view_config)
    if spec.num_classes > 0:
      classes_lib.parse_classes(spec, view_config.classes)
  return spec, layers


# ---- the job -----------------------------------------------------------------------------------

def run_atlas(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
              progress: Progress | None = None, wait: bool = False) -> Path:
  """Runs the atlas into `workdir`; returns the path of its index.html."""
  progress = progress or Progress("atlas")
  spec, layers = validate(config)
  root = frame.prepare_workdir(workdir)
  lock = hold_lock(root / LOCK, root, wait, progress)
  try:
    return _run(config, root, spec, layers, progress, wait)
  finally:
    lock.close()


def _run(config, root: Path, spec: ModelSpec, layers: list[str], progress: Progress,
         wait: bool) -> Path:
  gallery_job.run_gallery(gallery_config(config), root, progress=progress, wait=wait)
  model = frame.load(config, progress)
  classes = _classes(config, root, model, progress)
  digest = _site_digest(config, root, layers, classes)
  target = root / SITE
  index = target / "index.html"
  if _site_digest_of(target) == digest and index.is_file():
    progress(f"site already up to date → {index}")
    return index
  site = _site_input(config, root, model, layers, classes, progress)
  start = time.perf_counter()
  frame.remove_staging(target)
  with frame.staged_folder(target) as staging:
    pages = site_lib.build(staging, site)
    (staging / "atlas.json").write_text(json.dumps(
        {"digest": digest, "pages": pages, "layers": layers,
         "classes": classes is not None, "examples": site.dataset is not None}, indent=1) + "\n")
  progress(f"site: {pages} pages in {time.perf_counter() - start:.1f}s → {index}")
  return index


def _classes(config, root: Path, model: Model, progress: Progress) -> dict | None:
  """The classes view's results (`{"records": classes.json, "folder": Path}`), computed unless
  `root/classes` holds them for the same config; None for no classes section."""
  if not wants_classes(config):
    return None
  if model.spec.num_classes <= 0:
    progress(f"no classes section: {model.spec.name} as loaded has no classifier top")
    return None
  view_config = classes_config(config)
  folder = root / "classes"
  done = folder / "classes.json"
  try:
    same = (json.loads((folder / "config.json").read_text())
            == json.loads(json.dumps(view_config.to_dict())) and done.is_file())
  except (OSError, ValueError):
    same = False
  if same:
    progress(f"classes: already done → {folder}")
  else:
    view_jobs.run_classes(view_config, root, lambda message: progress(f"classes: {message}"))
  records = json.loads(done.read_text())
  return {"records": records, "folder": folder}


def _site_digest(config, root: Path, layers: list[str], classes: dict | None) -> str:
  """sha256 of what the site is built from: its format, the config, the gallery run (weights
  hash included), every layer's filters.json and the classes."""
  digest = hashlib.sha256()
  parts = [f"format {site_lib.FORMAT}", canonical_json(config_record(config)),
           (root / STATE_DIR / "run.json").read_text()]
  parts += [(root / layer / "filters.json").read_text() for layer in layers]
  if classes is not None:
    parts.append((classes["folder"] / "classes.json").read_text())
  for part in parts:
    digest.update(hashlib.sha256(part.encode()).digest())
  return digest.hexdigest()


def _site_digest_of(target: Path) -> str | None:
  try:
    return json.loads((target / "atlas.json").read_text())["digest"]
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _site_input(config, root: Path, model: Model, layers: list[str], classes: dict | None,
                progress: Progress) -> site_lib.SiteInput:
  spec = model.spec
  size = config.size or None
  top = {}
  dataset_input = None
  name = dataset_name(config, spec)
  if name:
    progress(f"examples: loading the {name} {config.example_split} split")
    images, labels = data.load_dataset(name, config.example_split)
    start = time.perf_counter()
    inputs = spec.preprocess(images * 255.0)
    top = examples_lib.top_examples(model, inputs, layers, config.examples, config.example_rank)
    progress(f"examples: {len(images)} {name} {config.example_split} images ranked for "
             f"{sum(spec.layer(l).features for l in layers)} filters in one forward pass "
             f"({time.perf_counter() - start:.1f}s)")
    dataset_input = site_lib.DatasetInput(name, config.example_split,
                                          np.asarray(spec.to_display(inputs)), labels,
                                          config.example_rank)
  first = weights_lib.first_conv(spec)
  inputs = []
  for layer in layers:
    folder = root / layer
    records = json.loads((folder / "filters.json").read_text())
    images = np.load(folder / "images.npy")
    activations = np.load(folder / "activations.npy")
    if images.ndim == 5:  # several images per filter (diversity): the atlas shows the first
      images, activations = images[:, 0], activations[:, 0]
    weights = None
    if layer == first:
      view = weights_lib.filter_weights(model, layer, [r["filter"] for r in records])
      weights = weights_lib.filter_tiles(spec, view)
    inputs.append(site_lib.LayerInput(layer, records, images, activations,
                                      spec.output_shape(layer, size), weights, top.get(layer)))
  info = [("model", spec.name),
          ("weights", config.weights
           or f"default ({default_weights(config.model, config.dataset)})"),
          ("preset", f"{config.preset}, {config.steps} steps"),
          ("image size", "×".join(str(d) for d in spec.input_shape_for(size)[:2])),
          ("filters", config.filters),
          ("jaxviz", jaxviz.__version__)]
  if spec.name == "lenet":
    info.insert(2, ("trained on", config.dataset))
  no_examples = ("No dataset examples: the examples setting is 0." if spec.name == "lenet"
                 else f"No dataset examples: {spec.name} has no dataset in jaxviz, so there "
                 "are no images to rank for its filters.")
  return site_lib.SiteInput(
      title=f"{spec.name} atlas", spec=spec, info=info, summary=summarize(spec, size),
      layers=inputs, bounded=AscentSettings.from_config(config).pixels_in_range,
      dataset=dataset_input, no_examples=no_examples,
      classes=classes["records"] if classes else None,
      class_pictures=({r["class"]: classes["folder"] / f"class_{r['class']}.png"
                       for r in classes["records"]} if classes else None))
