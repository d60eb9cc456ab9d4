"""The one frame every job runs in: check → load → compute → write atomically.

    run(config, workdir, progress, check=…, request=…, compute=…)

`check()` runs the checks that need no model, first. `request(spec)` checks the config against a
model spec and returns what `compute` needs (a typed request); it runs on the registered spec before
anything is loaded or written when the weights cannot change its answer (`early`), and again on the
loaded model's spec. `compute` yields `(folder, files, message)` per output folder; each is written
by `write_folder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import ml_collections
import numpy as np

from jaxviz import render
from jaxviz.errors import JaxvizError
from jaxviz.models import get_spec
from jaxviz.models.spec import Model, ModelSpec
from jaxviz.progress import Progress
from jaxviz.provision import load_or_train

Request = TypeVar("Request")
# relative name → uint8 picture (.png), array (.npy), text (str), or a value written as JSON
Files = Mapping[str, object]


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, progress: Progress, *,
        check: Callable[[], object], request: Callable[[ModelSpec], Request],
        compute: Callable[[Model, Request], Iterable[tuple[str, Files, str]]]) -> Path:
  """Runs one job; returns the last folder written."""
  check()
  early(config, request)
  root = prepare_workdir(workdir)
  model = load(config, progress)
  wanted = request(model.spec)
  out = root
  for folder, files, message in compute(model, wanted):
    out = write_folder(root / folder, files, config)
    progress(f"{message} → {out}")
  return out


def early(config: ml_collections.ConfigDict, check: Callable[[ModelSpec], object]) -> None:
  """Runs `check(spec)` on the registered spec before any weights are loaded (or trained),
  when the weights cannot change the answer: for models registered with their classifier top.
  One registered without it (VGG16's base) may load with a top, so its checks wait."""
  spec = get_spec(config.model)
  if spec.num_classes > 0:
    check(spec)


def load(config: ml_collections.ConfigDict, progress: Progress) -> Model:
  progress(f"loading {config.model} weights")
  return load_or_train(config.model, config.weights or None, dataset=config.dataset)


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


def write_folder(folder: Path, files: Files, config: ml_collections.ConfigDict) -> Path:
  """Writes `files` and config.json into a hidden folder beside `folder`, then renames it to
  `folder` (replacing an older one). Pictures are uint8 `[H, W, 1 or 3]`; float arrays are
  saved as float32."""
  with staged_folder(folder) as staging:
    for name, value in {**files, "config.json": config.to_dict()}.items():
      path = staging / name
      path.parent.mkdir(parents=True, exist_ok=True)
      if name.endswith(".png"):
        path.write_bytes(render.png_bytes(np.asarray(value, np.uint8)))
      elif name.endswith(".npy"):
        np.save(path, np.asarray(value, np.float32) if np.asarray(value).dtype.kind == "f"
                else np.asarray(value))
      elif isinstance(value, str):
        path.write_text(value)
      else:
        path.write_text(json.dumps(value, indent=1) + "\n")
  return folder


@contextlib.contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
  """A hidden folder beside `folder` to write into: renamed to `folder` (replacing an older
  one) when the block ends, deleted when it raises, so `folder` is whole or absent."""
  folder.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
  staging.chmod(0o755)
  try:
    yield staging
    replace_dir(staging, folder)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def remove_staging(folder: Path) -> None:
  """Deletes hidden folders a killed `write_folder` or `replace_dir` left beside `folder`."""
  for path in folder.parent.glob(f".{folder.name}.*"):
    if path.is_dir():
      shutil.rmtree(path, ignore_errors=True)


def replace_dir(new: Path, target: Path) -> None:
  """Moves folder `new` to `target`, replacing an existing `target` as one rename."""
  if target.exists():
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
    os.replace(target, old / target.name)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
  else:
    os.replace(new, target)
