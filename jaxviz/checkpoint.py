"""Parameter checkpoints in a safe format: Flax msgpack (arrays and plain values, no pickle).

A checkpoint `NAME.msgpack` holds `{"model": str, "params": {layer: {"kernel", "bias"}},
"metadata": {...}}`; a readable copy of the metadata (test accuracy, dataset, …) is written
beside it as `NAME.json`.

`save` writes the msgpack stream itself, one array at a time, byte for byte as
`flax.serialization.msgpack_serialize` would (maps with sorted keys; each array a msgpack
extension of type 1 holding `(shape, dtype name, C-order bytes)`; arrays over
`flax.serialization.MAX_CHUNK_SIZE` bytes split into chunks the way Flax splits them), so a
checkpoint never has to fit in memory twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import struct
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np
from flax import serialization

from jaxviz.errors import JaxvizError
from jaxviz.models.spec import ModelSpec, Params

# Flax's msgpack extension type for ndarrays (`flax.serialization._MsgpackExtType.ndarray`).
EXT_NDARRAY = 1
WEIGHT_SUFFIXES = (".msgpack", ".keras", ".h5", ".hdf5")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """What a checkpoint file holds: the model name, `{layer: {var: array}}` and the metadata."""
  model: str
  params: Params
  metadata: dict


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
  """Yields a binary file beside `path` that replaces `path` durably once the block ends
  without error: flushed to disk (fsync), renamed over `path`, then the folder flushed too, so
  after a crash or a power cut `path` holds either its old bytes or all of the new ones. On an
  error the temporary file is deleted and `path` is untouched."""
  path = Path(path)
  new_folder = not path.parent.is_dir()
  path.parent.mkdir(parents=True, exist_ok=True)
  if new_folder:
    fsync_dir(path.parent.parent)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      yield f
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes `data` to `path` durably and atomically (`atomic_file`)."""
  with atomic_file(path) as f:
    f.write(data)


def save(path: str | os.PathLike, model_name: str, params: Mapping, metadata: dict,
         dtype=None) -> Path:
  """Writes the checkpoint and its `.json` metadata beside it; returns the checkpoint path.

  `params` is `{layer: {var: leaf}}`; a leaf is an array (NumPy or JAX) or a function returning
  one, called only when that array is written, so that a caller reading weights from a file
  holds one array in memory at a time. With `dtype`, arrays are cast to it. The file is written
  to a temporary file, flushed to disk and renamed: on any error nothing is left at `path`.
  """
  path = Path(path)
  with atomic_file(path) as f:
    write_state(f, model_name, params, json.dumps(metadata), dtype)
  with atomic_file(path.with_suffix(".json")) as f:
    f.write((json.dumps({"model": model_name, **metadata}, indent=2) + "\n").encode())
  return path


def write_state(f: BinaryIO, model_name: str, params: Mapping, metadata_json: str,
                dtype=None) -> None:
  """Writes `{"metadata", "model", "params"}` to `f` as `msgpack_serialize` encodes it."""
  packer = msgpack.Packer(use_bin_type=True)
  f.write(packer.pack_map_header(3))
  for key, value in (("metadata", metadata_json), ("model", model_name)):
    f.write(packer.pack(key) + packer.pack(value))
  f.write(packer.pack("params"))
  _write_tree(f, packer, params, dtype)


def _write_tree(f: BinaryIO, packer: msgpack.Packer, tree, dtype) -> None:
  """A map of string keys (sorted, as `jax.tree_util` orders them) or an array leaf."""
  if isinstance(tree, Mapping):
    f.write(packer.pack_map_header(len(tree)))
    for key in sorted(tree):
      f.write(packer.pack(key))
      _write_tree(f, packer, tree[key], dtype)
    return
  leaf = tree() if callable(tree) else tree
  array = np.asarray(leaf) if dtype is None else np.asarray(leaf, dtype)
  del leaf
  if array.nbytes > serialization.MAX_CHUNK_SIZE:
    _write_chunked(f, packer, array)
  else:
    write_array(f, array)


def _write_chunked(f: BinaryIO, packer: msgpack.Packer, array: np.ndarray) -> None:
  """A large array as Flax splits it: `{"__msgpack_chunked_array__": True, "shape": {"0": n0,
  …}, "chunks": {"0": flat chunk, …}}`, each chunk of at most `MAX_CHUNK_SIZE` bytes."""
  size = max(1, serialization.MAX_CHUNK_SIZE // array.dtype.itemsize)
  flat = np.asarray(array, order="C").reshape(-1)
  chunks = range(0, flat.size, size)
  f.write(packer.pack_map_header(3) + packer.pack("__msgpack_chunked_array__")
          + packer.pack(True) + packer.pack("shape")
          + packer.pack({str(i): n for i, n in enumerate(array.shape)})
          + packer.pack("chunks") + packer.pack_map_header(len(chunks)))
  for i, start in enumerate(chunks):
    f.write(packer.pack(str(i)))
    write_array(f, flat[start:start + size])


def write_array(f: BinaryIO, array: np.ndarray) -> None:
  """One array as Flax's ndarray extension: the extension header, then the msgpack array
  `[shape, dtype name, bin of the C-order bytes]`, the bytes written from the array itself."""
  array = np.asarray(array, order="C")  # keeps 0-d arrays 0-d, unlike ascontiguousarray
  if array.dtype.hasobject or array.dtype.isalignedstruct:
    raise JaxvizError(f"cannot save an array of dtype {array.dtype} in a checkpoint")
  head = (b"\x93" + msgpack.packb(list(array.shape)) + msgpack.packb(array.dtype.name)
          + _bin_header(array.nbytes))
  f.write(_ext_header(EXT_NDARRAY, len(head) + array.nbytes) + head)
  f.write(array.reshape(-1).view(np.uint8).data)


def _ext_header(code: int, n: int) -> bytes:
  """The msgpack header of an extension of type `code` with `n` bytes of data."""
  fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
  if n in fixed:
    return struct.pack(">Bb", fixed[n], code)
  if n < 1 << 8:
    return struct.pack(">BBb", 0xC7, n, code)
  if n < 1 << 16:
    return struct.pack(">BHb", 0xC8, n, code)
  if n < 1 << 32:
    return struct.pack(">BIb", 0xC9, n, code)
  raise JaxvizError(f"an array of {n} bytes is too large for one msgpack extension")


def _bin_header(n: int) -> bytes:
  """The msgpack header of `n` bytes of binary data."""
  if n < 1 << 8:
    return struct.pack(">BB", 0xC4, n)
  if n < 1 << 16:
    return struct.pack(">BH", 0xC5, n)
  return struct.pack(">BI", 0xC6, n)


def require_file(path: Path, what: str, fix: str = "") -> None:
  """Raises `JaxvizError` unless `path` is a file: saying so when it is a folder (naming the
  weights files inside it) and when it does not exist (adding `fix`)."""
  path = Path(path)
  if path.is_dir():
    if (path / "saved_model.pb").exists():
      kind = ("a TensorFlow SavedModel folder, which jaxviz cannot read: load it in Keras and "
              "save it as one file with model.save('model.keras'), then pass that file")
    else:
      inside = sorted(p.name for p in path.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
      kind = ("a folder, not a file: pass the weights file itself, a jaxviz checkpoint "
              "(.msgpack) or a Keras file (.keras, .h5, .weights.h5)"
              + (f", e.g. {str(path / inside[0])!r} (the folder holds {', '.join(inside[:5])})"
                 if inside else ""))
    raise JaxvizError(f"{what} {str(path)!r} is {kind}.")
  if not path.is_file():
    raise JaxvizError(f"{what} {str(path)!r} does not exist.{' ' + fix if fix else ''}")


def read(path: str | os.PathLike) -> Checkpoint:
  """Reads a checkpoint written by `save`, once, without checking it against a model.

  Raises `JaxvizError` when the file is missing, is a folder, or is not a jaxviz checkpoint.
  """
  path = Path(path)
  require_file(path, "checkpoint", "Train one with `jaxviz train` or pass the path of an "
               "existing checkpoint.")
  try:
    state = serialization.msgpack_restore(path.read_bytes())
    model_name, params = state["model"], state["params"]
    metadata = json.loads(state.get("metadata", "{}"))
  except Exception as e:  # msgpack raises several types on garbage; all mean "corrupt".
    raise JaxvizError(f"{str(path)!r} is not a readable jaxviz checkpoint ({type(e).__name__}: "
                      f"{e}). It may be truncated or another kind of file; retrain with "
                      "`jaxviz train` or convert the weights again.") from None
  return Checkpoint(model_name, params, metadata)


def check(ckpt: Checkpoint, spec: ModelSpec, source: str) -> None:
  """Raises `JaxvizError` unless checkpoint `ckpt` (read from `source`) fits model `spec`."""
  if ckpt.model != spec.name:
    raise JaxvizError(f"checkpoint {source!r} holds weights of model {ckpt.model!r}, "
                      f"not {spec.name!r}. Choose model={ckpt.model!r} or another checkpoint.")
  check_params(ckpt.params, spec, source=source)


def load(path: str | os.PathLike, spec: ModelSpec) -> tuple[Params, dict]:
  """Reads a checkpoint written by `save` and checks it against `spec`.

  Returns `(params, metadata)`. Raises `JaxvizError` when the file is missing, is not a jaxviz
  checkpoint, belongs to another model, or has a missing layer or a wrong shape.
  """
  ckpt = read(path)
  check(ckpt, spec, str(path))
  return ckpt.params, ckpt.metadata


def check_params(params: Mapping[str, Any], spec: ModelSpec, source: str) -> None:
  """Raises `JaxvizError` unless `params` has exactly the layers and shapes `spec` needs.

  Leaves may be anything with a `.shape` (arrays, h5py datasets)."""
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

