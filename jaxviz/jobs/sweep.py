"""The sweep job: a grid of ascent hyperparameters, every setting × filter in one compiled program.

    jaxviz sweep --workdir runs/s --sweep.step_size=0.05,0.1,0.2 --sweep.jitter=0,0.08,0.16

The grid is the Cartesian product of the `--sweep.KEY=V1,V2,…` lists; each setting is the
config with those values. Any traced hyperparameter (`ascent.HYPERPARAMETERS`) can be swept:
the engine is built with every swept piece switched on (a value 0 gives the same images as the
piece off) and runs the (setting, filter) items chunked like a gallery's filters
(`FilterEngine.run_settings`), so a sweep compiles once whatever its values.

WORKDIR is the sweep's folder: `sweep.png` (a row per setting, a column per filter),
`sweep.json`, `images.npy` and `best.py`, a config with the best setting (`BEST_RULE`). It is
written into a hidden folder beside it and renamed into place, so a failed run leaves nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import ml_collections
import numpy as np

from jaxviz import ascent, gallery, render
from jaxviz.config import take_prefixed
from jaxviz.engine import AscentSettings, FilterEngine, FilterResult
from jaxviz.errors import JaxvizError, unknown
from jaxviz.jobs import frame, gallery as gallery_job
from jaxviz.progress import SILENT, Progress
from jaxviz.resume import hold_lock

SWEEPABLE = ascent.HYPERPARAMETERS
MAX_SETTINGS = 256
OUTPUT_FILES = ("sweep.png", "sweep.json", "images.npy", "best.py", "config.json")
PREFIX = "--sweep."
BEST_RULE = ("most live filters, then the highest median robustness, then the highest median "
             "activation (medians over live filters); the first setting wins a tie")

Grid = dict[str, list[float]]


# --- the grid --------------------------------------------------------------------------------

def split_sweep_arguments(extra: Sequence[str]) -> tuple[Grid, list[str]]:
  """`["--sweep.decay=0,0.1", "--config.steps=5"]` → (`{"decay": [0.0, 0.1]}`, the rest).

  `--sweep.KEY V1,V2` works too. Every key and value is checked (`check_key`, `parse_values`).
  """
  grid: Grid = {}
  pairs, rest = take_prefixed(extra, PREFIX)
  for key, text in pairs:
    check_key(key)
    if key in grid:
      raise JaxvizError(f"--sweep.{key} is given twice; give all its values once: "
                        f"--sweep.{key}=V1,V2,…")
    grid[key] = parse_values(key, text)
  return grid, rest


def check_key(key: str) -> None:
  """Raises unless `key` is a sweepable (traced) setting, saying which ones are."""
  if key in SWEEPABLE:
    return
  if key in {f.name for f in dataclasses.fields(AscentSettings)}:
    raise JaxvizError(f"{key} cannot be swept: it changes the compiled program. Only these "
                      f"keys can be swept: {', '.join(SWEEPABLE)}")
  raise unknown("sweep key", key, SWEEPABLE)


def parse_values(key: str, text: str) -> list[float]:
  """`"0,0.01,0.05"` → `[0.0, 0.01, 0.05]`: finite numbers, at least one, none repeated."""
  parts = [part.strip() for part in text.split(",")]
  if not any(parts):
    raise JaxvizError(f"--sweep.{key} has no values; give a list like --sweep.{key}=0,0.5,1")
  values = []
  for part in parts:
    try:
      value = float(part)
    except ValueError:
      raise JaxvizError(f"--sweep.{key}: {part!r} is not a number "
                        "(give numbers separated by commas)") from None
    if not math.isfinite(value):
      raise JaxvizError(f"--sweep.{key}: {part!r} is not a finite number")
    if value in values:
      raise JaxvizError(f"--sweep.{key}: {part!r} is repeated")
    values.append(value)
  return values


def grid_points(grid: Grid) -> list[dict[str, float]]:
  """The Cartesian product of the value lists, the last key changing fastest."""
  keys = list(grid)
  return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def describe(point: dict[str, float]) -> str:
  """`{"decay": 0.01, "blur_sigma": 0.5}` → `"decay=0.01 blur_sigma=0.5"`."""
  return " ".join(f"{k}={v:g}" for k, v in point.items())


@dataclasses.dataclass(frozen=True)
class SweepPlan:
  """A checked sweep: the grid points, their settings, and the engine's settings (every swept
  piece on: each key at its largest value)."""
  layer: str
  filters: tuple[int, ...]
  points: list[dict[str, float]]
  settings: list[AscentSettings]
  engine_settings: AscentSettings


def plan_sweep(config: ml_collections.ConfigDict, grid: Grid) -> SweepPlan:
  """Checks the config and every grid point before anything is loaded, computed or written."""
  if not grid:
    raise JaxvizError(f"nothing to sweep: give one or more {PREFIX}KEY=V1,V2,… with KEY one of "
                      f"{', '.join(SWEEPABLE)}")
  for key in grid:
    check_key(key)
  size = math.prod(len(v) for v in grid.values())
  if size > MAX_SETTINGS:
    raise JaxvizError(f"the grid has {size} settings "
                      f"({' × '.join(str(len(v)) for v in grid.values())}); a sweep takes at "
                      f"most {MAX_SETTINGS}: sweep fewer values")
  request = gallery_job.validate(config)
  layers, base = [wanted.layer for wanted in request.layers], request.settings
  if len(layers) != 1:
    raise JaxvizError(f"a sweep is of one layer; config.layer names {len(layers)}: "
                      f"{', '.join(layers)}")
  if "diversity_weight" in grid and base.diversity == 1:
    raise JaxvizError("diversity_weight acts only with several images per filter: set "
                      "--config.diversity=2 or more, or sweep another key")
  points = grid_points(grid)
  settings = []
  for point in points:
    s = dataclasses.replace(base, **point)
    try:
      s.validate()
    except JaxvizError as e:
      raise JaxvizError(f"sweep setting {describe(point)}: {e}") from None
    settings.append(s)
  engine_settings = dataclasses.replace(base, **{k: max(v) for k, v in grid.items()})
  engine_settings.validate()
  return SweepPlan(layers[0], request.layers[0].filters, points, settings, engine_settings)


def check_workdir(workdir: str | os.PathLike, config_source: str = "") -> Path:
  """The sweep replaces WORKDIR as a whole: it must be new, empty, or an earlier sweep's (and
  not hold the config file the sweep reads)."""
  folder = Path(os.path.abspath(workdir))
  if is_file(config_source) and Path(os.path.abspath(config_source)).parent == folder:
    raise JaxvizError(f"the config file {config_source!r} is in the workdir, which the sweep "
                      "replaces: copy it elsewhere or choose another --workdir")
  if folder.exists():
    if not folder.is_dir():
      raise JaxvizError(f"workdir {str(workdir)!r} is a file; choose a folder for --workdir")
    other = sorted(p.name for p in folder.iterdir() if p.name not in OUTPUT_FILES)
    if other:
      raise JaxvizError(f"workdir {str(workdir)!r} holds other files ({', '.join(other[:3])}"
                        f"{', …' if len(other) > 3 else ''}); a sweep writes a whole folder: "
                        "choose a new or empty --workdir")
  return folder


# --- the run ---------------------------------------------------------------------------------

def run_sweep(config: ml_collections.ConfigDict, grid: Grid, workdir: str | os.PathLike,
              config_source: str = "", overrides: dict[str, str] | None = None,
              progress: Progress | None = None) -> tuple[Path, dict]:
  """Runs the sweep and writes WORKDIR; returns it and the best setting's sweep.json entry.

  `config_source` is the `--config` the config came from (a shipped name or a file) and
  `overrides` its `--config.KEY=VALUE` texts: `best.py` loads the one and sets the other.
  """
  progress = progress or SILENT
  plan = plan_sweep(config, grid)
  folder = check_workdir(workdir, config_source)
  frame.prepare_workdir(folder.parent)
  # WORKDIR is replaced whole, so the lock that keeps a second sweep out lives beside it.
  lock = hold_lock(folder.parent / f".{folder.name}.lock", folder, False, progress)
  try:
    return _run(config, plan, folder, config_source, overrides, progress)
  finally:
    lock.close()


def _run(config: ml_collections.ConfigDict, plan: SweepPlan, folder: Path, config_source: str,
         overrides: dict[str, str] | None, progress: Progress) -> tuple[Path, dict]:
  frame.remove_staging(folder)
  model = frame.load(config, progress)
  engine = FilterEngine(model, plan.layer, plan.engine_settings, config.size)
  indices = list(plan.filters)
  progress(f"{len(plan.points)} settings × {len(indices)} filters of {plan.layer}: "
           f"{len(plan.points) * len(indices)} images in one program")
  results = engine.run_settings(plan.settings, indices, seed=config.seed,
                                chunk_size=config.chunk_size,
                                memory_budget_mb=config.get("memory_budget_mb", 0),
                                progress=progress)
  summary = summarize(plan.points, results, config.get("preset", ""))
  display = np.stack([model.spec.to_display(r.images) for r in results])
  picture = sweep_picture(display, summary["settings"], margin=config.margin,
                          normalize=not plan.engine_settings.pixels_in_range)
  best = summary["settings"][summary["best"]]
  source = best_config_source(config, config_source, overrides or {}, best["values"], folder)
  frame.write_folder(folder, {"sweep.png": picture, "sweep.json": summary,
                              "images.npy": np.stack([r.images for r in results]),
                              "best.py": source}, config)
  return folder, best


def summarize(points: list[dict[str, float]], results: Sequence[FilterResult],
              preset: str = "") -> dict:
  """sweep.json: per setting its `values`, `live` filters, `median_activation` and
  `median_robustness` (over live filters; null when none) and per filter `filters` records
  (`gallery.filter_records`); `best`, the index of the best setting by `rule`."""
  settings = []
  for point, result in zip(points, results):
    records = gallery.filter_records(result.filters, result.final_activations,
                                     result.filter_robustness, preset)
    settings.append({"values": point, **gallery.stats(records), "filters": records})
  return {"keys": list(points[0]), "rule": BEST_RULE, "best": best_index(settings),
          "settings": settings}


def best_index(settings: Sequence[dict]) -> int:
  """The index of the best setting by `BEST_RULE`."""
  def score(s):
    missing = -math.inf
    return (s["live"], s["median_robustness"] if s["median_robustness"] is not None else missing,
            s["median_activation"] if s["median_activation"] is not None else missing)
  return max(range(len(settings)), key=lambda i: (score(settings[i]), -i))


def summary_text(entry: dict) -> str:
  """`"decay=0.01 blur_sigma=0.5: 8/8 live, median robustness 0.93, median activation 41.2"`."""
  text = f"{describe(entry['values'])}: {entry['live']}/{entry['count']} live"
  if entry["median_robustness"] is not None:
    text += f", median robustness {entry['median_robustness']:.2f}"
  if entry["median_activation"] is not None:
    text += f", median activation {entry['median_activation']:.3g}"
  return text


# --- the picture -----------------------------------------------------------------------------

def sweep_picture(display: np.ndarray, settings: Sequence[dict], margin: int = 5,
                  normalize: bool = True) -> np.ndarray:
  """sweep.png: `display` `[S, N, H, W, C]` (or `[S, N, D, H, W, C]`, of which image 0 is
  shown) as S rows of N tiles, each row labelled on the left with its values and the columns
  headed by filter numbers; dead filters are black tiles. Returns `[height, width, C]` uint8.
  """
  display = np.asarray(display)
  if display.ndim == 6:
    display = display[:, :, 0]
  s, n, h, w, c = display.shape
  show = render.deprocess if normalize else render.pixels_uint8
  tiles = np.stack([show(display[i, j]) if not record["dead"] else np.zeros((h, w, c), np.uint8)
                    for i, entry in enumerate(settings)
                    for j, record in enumerate(entry["filters"])])
  grid = render.stitch(tiles, margin, columns=n)
  labels = [describe(entry["values"]) for entry in settings]
  headers = [str(record["filter"]) for record in settings[0]["filters"]]
  return render.with_headers(grid, labels, headers, h, w, margin)


# --- best.py ---------------------------------------------------------------------------------

def best_config_source(config: ml_collections.ConfigDict, config_source: str,
                       overrides: dict[str, str], values: dict[str, float],
                       folder: Path) -> str:
  """The text of best.py: the config the sweep used (its file, or shipped name) with the same
  overrides and the best setting's values, so `jaxviz gallery --config WORKDIR/best.py` runs
  it from any folder. Paths (the config file, relative weights) are made absolute."""
  if is_file(config_source):
    config_source = os.path.abspath(config_source)
  lines = []
  for key in overrides:
    if key in values:
      continue
    value = _lookup(config, key)
    if key == "weights" and value and os.path.exists(value):
      value = os.path.abspath(value)
    lines.append(f"  c.{key} = {value!r}")
  lines += [f"  c.{key} = {value!r}" for key, value in values.items()]
  return f'''"""The best setting of the sweep in {str(folder)!r}: {describe(values)}.

{textwrap.fill(f"Chosen by: {BEST_RULE}.", 96)}

    jaxviz gallery --config {folder / "best.py"} --workdir runs/best
"""

from jaxviz.config import load_config


def get_config():
  c = load_config({config_source!r})
{chr(10).join(lines)}
  return c
'''


def is_file(config_source: str) -> bool:
  """Whether `--config` names a file rather than a shipped config (as `load_config` decides)."""
  return config_source.endswith(".py") or "/" in config_source


def _lookup(config: ml_collections.ConfigDict, key: str):
  node = config
  for part in key.split("."):
    node = node[part]
  return node
