"""Parameter checkpoints in a safe format: Flax msgpack (arrays and plain values, no pickle).

A checkpoint `NAME.msgpack` holds `{"model": str, "params": {layer: {"kernel", "bias"}},
"metadata": {...}}`; a readable copy of the metadata (test accuracy, dataset, …) is written
beside it as `NAME.json`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import jax
import numpy as np
from flax import serialization

from jaxviz.errors import JaxvizError
from jaxviz.models.spec import ModelSpec, Params


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` durably: to a temporary file beside it, flushed to disk (fsync),
  renamed over `path`, then the folder flushed too. After a crash or a power cut `path` holds
  either its old bytes or all of the new ones."""
  path = Path(path)
  new_folder = not path.parent.is_dir()
  path.parent.mkdir(parents=True, exist_ok=True)
  if new_folder:
    fsync_dir(path.parent.parent)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise
  fsync_dir(path.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
  """Flushes `folder`'s entries (names created, renamed or deleted in it) to disk; a no-op where
  the filesystem cannot sync a folder."""
  try:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def save(path: str | os.PathLike, model_name: str, params: Params, metadata: dict) -> Path:
  """Writes the checkpoint and its `.json` metadata beside it; returns the checkpoint path."""
  path = Path(path)
  params = jax.tree_util.tree_map(np.asarray, params)
  blob = serialization.msgpack_serialize(
      {"model": model_name, "params": params, "metadata": json.dumps(metadata)})
  atomic_write_bytes(path, blob)
  atomic_write_bytes(path.with_suffix(".json"),
                     (json.dumps({"model": model_name, **metadata}, indent=2) + "\n").encode())
  return path


def load(path: str | os.PathLike, spec: ModelSpec) -> tuple[Params, dict]:
  """Reads a checkpoint written by `save` and checks it against `spec`.

  Returns `(params, metadata)`. Raises `JaxvizError` when the file is missing, is not a jaxviz
  checkpoint, belongs to another model, or has a missing layer or a wrong shape.
  """
  path = Path(path)
  if not path.is_file():
    raise JaxvizError(f"checkpoint {str(path)!r} does not exist. Train one with `jaxviz train` "
                      "or pass the path of an existing checkpoint.")
  try:
    state = serialization.msgpack_restore(path.read_bytes())
    model_name, params = state["model"], state["params"]
    metadata = json.loads(state.get("metadata", "{}"))
  except Exception as e:  # msgpack raises several types on garbage; all mean "corrupt".
    raise JaxvizError(f"{str(path)!r} is not a readable jaxviz checkpoint ({type(e).__name__}: "
                      f"{e}). It may be truncated or another kind of file; retrain with "
                      "`jaxviz train` or convert the weights again.") from None
  if model_name != spec.name:
    raise JaxvizError(f"checkpoint {str(path)!r} holds weights of model {model_name!r}, "
                      f"not {spec.name!r}. Choose model={model_name!r} or another checkpoint.")
  check_params(params, spec, source=str(path))
  return params, metadata


def check_params(params: Params, spec: ModelSpec, source: str) -> None:
  """Raises `JaxvizError` unless `params` has exactly the layers and shapes `spec` needs."""
  expected = spec.param_shapes()
  missing = sorted(set(expected) - set(params))
  extra = sorted(set(params) - set(expected))
  if missing or extra:
    raise JaxvizError(f"{source}: weights do not match model {spec.name!r}: "
                      f"missing layers {missing}, unexpected layers {extra}.")
  for layer, shapes in expected.items():
    for var, shape in shapes.items():
      found = tuple(np.shape(params[layer].get(var, ())))
      if found != shape:
        raise JaxvizError(f"{source}: layer {layer!r} {var} has shape {found}, "
                          f"model {spec.name!r} expects {shape}.")
