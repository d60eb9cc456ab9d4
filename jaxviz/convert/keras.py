"""Keras weight files → jaxviz parameters, for every layout Keras has written.

Layouts, and how each is recognized (read with h5py and zipfile only; Keras is not needed):
  - Keras 2 weights files, among them the ImageNet files
    `vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5`: root attribute `layer_names`; one
    group per layer whose attribute `weight_names` lists its datasets, e.g.
    `block1_conv1_W_1:0` and `block1_conv1_b_1:0` (or `block1_conv1/kernel:0`).
  - legacy full models (`model.save("x.h5")`): the same under the group `model_weights`, with
    weight names like `block1_conv1/kernel`.
  - Keras 3 `.weights.h5`: `layers/<conv2d, conv2d_1, …>/vars/{0: kernel, 1: bias}`. The keys
    number layers by class, not by name; the Keras name is the attribute `name` of `vars`
    (Keras ≥ 3.6). Older files record no names: inside a `.keras` archive the names are taken
    from its `config.json`, the way Keras numbers the keys.
  - `.keras`: a zip archive holding `config.json` and `model.weights.h5` in the layout above.

Weights are matched to the model by layer name, never by position. Every layer and shape is
checked against the model before any array is read, then arrays are read one at a time, so a
528 MB file needs about one copy of its parameters in memory.

Kernels are stored as Flax stores them: conv `[kh, kw, c_in, c_out]` (HWIO), dense
`[d_in, d_out]`, so they are copied as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from jaxviz import checkpoint
from jaxviz.errors import JaxvizError
from jaxviz.loading import spec_for_layers
from jaxviz.models import MODELS, ModelSpec, get_spec
from jaxviz.models.spec import Params

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
ARCHIVE_WEIGHTS = "model.weights.h5"
ARCHIVE_CONFIG = "config.json"

# {layer name: {"kernel" | "bias" | other variable name: dataset}}
Index = dict[str, dict[str, h5py.Dataset]]


@dataclasses.dataclass(frozen=True)
class Converted:
  """Parameters read from a Keras file, with the model variant they fit and the file's layout."""
  spec: ModelSpec
  params: Params
  layout: str


def read_params(path: str | os.PathLike, spec: ModelSpec) -> Params:
  """Parameters of model `spec` from Keras file `path` (see `read`)."""
  return read(path, spec).params


def read(path: str | os.PathLike, spec: ModelSpec) -> Converted:
  """Reads the weights of model `spec` from a Keras file of any layout.

  For VGG16 the variant comes from the file: with the top when it holds `fc1`, `fc2` or
  `predictions`, else without (see `jaxviz.loading.spec_for_layers`).

  Raises `JaxvizError` naming the file when it is not HDF5 or zip, is truncated or damaged,
  holds another model's weights, misses a layer or has one too many, or has a wrong shape
  (naming the layer, the expected and the found shape).
  """
  path = Path(path)
  source = str(path)
  try:
    with open_weights(path) as (root, config):
      layout, index = _index(root, config, source)
      spec = spec_for_layers(spec, index)
      _check(index, spec, source)
      params = {layer: {var: np.asarray(ds[()], np.float32) for var, ds in index[layer].items()}
                for layer in spec.param_shapes()}
  except (JaxvizError, MemoryError):
    raise
  except Exception as e:  # h5py and zipfile raise many types on damaged files.
    raise JaxvizError(f"{source}: cannot read this Keras file; it may be truncated or damaged "
                      f"({type(e).__name__}: {e}). Download or save it again.") from None
  return Converted(spec, params, layout)


def convert(src: str | os.PathLike, dst: str | os.PathLike, model: str = "vgg16",
            metadata: dict | None = None) -> Path:
  """Converts Keras file `src` to the jaxviz checkpoint `dst` (`.msgpack`, plus a `.json` copy
  of its metadata) for model `model`. Returns `dst`.

  The checkpoint is written only after every weight has been read and checked, and atomically,
  so on any error nothing is written at `dst`.
  """
  src, dst = Path(src), Path(dst)
  if dst.suffix != ".msgpack":
    raise JaxvizError(f"output {str(dst)!r} must be a jaxviz checkpoint path ending in "
                      ".msgpack, e.g. vgg16.msgpack")
  if not src.is_file():
    raise JaxvizError(f"Keras file {str(src)!r} does not exist")
  if dst.exists() and dst.resolve() == src.resolve():
    raise JaxvizError("the output would overwrite the input; choose another output path")
  result = read(src, get_spec(model))
  checkpoint.check_params(result.params, result.spec, source=str(src))
  info = {"source": src.name, "layout": result.layout,
          "num_classes": result.spec.num_classes, **(metadata or {})}
  return checkpoint.save(dst, result.spec.name, result.params, info)


@contextlib.contextmanager
def open_weights(path: Path) -> Iterator[tuple[h5py.Group, dict | None]]:
  """Opens the HDF5 weights of a Keras file: yields `(root group, model config or None)`.

  For a `.keras` archive the weights member is read in place when stored uncompressed (as
  Keras writes it), else through a temporary copy on disk; never whole into memory.
  """
  with open(path, "rb") as f:
    head = f.read(8)
  if head.startswith(ZIP_SIGNATURE):
    with _open_archive(path) as opened:
      yield opened
  elif head.startswith(HDF5_SIGNATURE) or h5py.is_hdf5(path):
    with h5py.File(path, "r") as root:
      yield root, None
  else:
    kind = "an empty file" if not head else f"a file starting with {head!r}"
    raise JaxvizError(
        f"{str(path)}: not a Keras weights file: it is {kind}, neither HDF5 (.h5, .weights.h5) "
        "nor a zip archive (.keras). Check the path, or download the file again.")


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[tuple[h5py.Group, dict | None]]:
  with zipfile.ZipFile(path) as zf:
    members = zf.namelist()
    if ARCHIVE_WEIGHTS not in members:
      raise JaxvizError(f"{str(path)}: a zip archive without {ARCHIVE_WEIGHTS}, so not a Keras "
                        f".keras file (it holds {members[:10]}).")
    config = None
    if ARCHIVE_CONFIG in members:
      config = json.loads(zf.read(ARCHIVE_CONFIG))
    info = zf.getinfo(ARCHIVE_WEIGHTS)
    with contextlib.ExitStack() as stack:
      if info.compress_type == zipfile.ZIP_STORED:
        raw = stack.enter_context(open(path, "rb"))
        member = _FileSlice(raw, _data_offset(raw, info), info.file_size)
      else:
        member = stack.enter_context(tempfile.TemporaryFile())
        with zf.open(info) as compressed:
          shutil.copyfileobj(compressed, member, 1 << 24)
        member.seek(0)
      root = stack.enter_context(h5py.File(member, "r"))
      yield root, config


def _data_offset(f, info: zipfile.ZipInfo) -> int:
  """Where the bytes of zip member `info` start: after its local header, whose name and extra
  fields may differ in length from the central directory's."""
  f.seek(info.header_offset)
  header = f.read(30)
  if len(header) < 30 or not header.startswith(ZIP_SIGNATURE):
    raise JaxvizError(f"damaged zip archive: no local header for {info.filename}")
  name_len, extra_len = struct.unpack("<HH", header[26:30])
  return info.header_offset + 30 + name_len + extra_len


class _FileSlice(io.RawIOBase):
  """A read-only, seekable view of bytes `[start, start + size)` of an open binary file."""

  def __init__(self, f, start: int, size: int):
    super().__init__()
    self._f, self._start, self._size, self._pos = f, start, size, 0

  def readable(self) -> bool:
    return True

  def seekable(self) -> bool:
    return True

  def tell(self) -> int:
    return self._pos

  def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
    base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
    self._pos = max(0, base + offset)
    return self._pos

  def readinto(self, buffer) -> int:
    n = max(0, min(len(buffer), self._size - self._pos))
    self._f.seek(self._start + self._pos)
    got = self._f.readinto(memoryview(buffer)[:n])
    self._pos += got
    return got


def _index(root: h5py.Group, config: dict | None, source: str) -> tuple[str, Index]:
  """`(layout name, {layer: {variable: dataset}})` for the layers that hold weights."""
  if "model_weights" in root:
    return "legacy full-model .h5", _index_legacy(root["model_weights"], source)
  if _attr_list(root, "layer_names"):
    return "Keras 2 weights .h5", _index_legacy(root, source)
  if "layers" in root or "_layer_checkpoint_dependencies" in root:
    layout = "Keras 3 .keras archive" if config is not None else "Keras 3 .weights.h5"
    return layout, _index_keras3(root, config, source)
  raise JaxvizError(f"{source}: an HDF5 file without Keras weights (no 'layer_names', "
                    f"'model_weights' or 'layers'; it holds {list(root)[:10]}).")


def _attr_list(group: h5py.Group, name: str) -> list[str]:
  """A list-of-strings attribute, possibly split by Keras into `name0`, `name1`, …"""
  if name in group.attrs:
    values = list(group.attrs[name])
  else:
    values, i = [], 0
    while f"{name}{i}" in group.attrs:
      values += list(group.attrs[f"{name}{i}"])
      i += 1
  return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _index_legacy(group: h5py.Group, source: str) -> Index:
  """Keras 2 and legacy .h5: groups listed in `layer_names`, datasets in `weight_names`."""
  index: Index = {}
  for group_name in _attr_list(group, "layer_names"):
    if group_name not in group:
      raise JaxvizError(f"{source}: damaged file: layer {group_name!r} is listed but has no "
                        "group")
    layer_group = group[group_name]
    weight_names = _attr_list(layer_group, "weight_names")
    # A nested model stores all its layers' weights in one group, each named "<layer>/<var>".
    parents = {name.rsplit("/", 1)[0] for name in weight_names if "/" in name}
    nested = len(parents) > 1
    for weight_name in weight_names:
      layer = weight_name.split("/")[-2] if nested else group_name
      _add(index, layer, _variable(weight_name), layer_group[weight_name], source)
  return index


def _variable(weight_name: str) -> str:
  """`block1_conv1_W_1:0`, `block1_conv1/kernel:0`, `kernel` → "kernel"; likewise "bias"."""
  base = re.sub(r"_\d+$", "", weight_name.rsplit("/", 1)[-1].split(":")[0])
  if base == "kernel" or base.endswith("_W"):
    return "kernel"
  if base == "bias" or base.endswith("_b"):
    return "bias"
  return base


def _index_keras3(root: h5py.Group, config: dict | None, source: str) -> Index:
  """Keras 3: `layers/<key>/vars/<i>`, recursing into nested models' `layers`."""
  names = _config_keys(config) if config else {}
  index: Index = {}

  def walk(group: h5py.Group, prefix: str) -> None:
    for key in group:
      child = group[key]
      if not isinstance(child, h5py.Group):
        continue
      path = f"{prefix}/{key}"
      variables = child.get("vars")
      if isinstance(variables, h5py.Group) and len(variables):
        name = variables.attrs.get("name") or names.get(path)
        if not name:
          raise JaxvizError(
              f"{source}: layer {path!r} has no recorded name (files of Keras 3.0–3.5 "
              "record none in .weights.h5), and jaxviz maps weights by name only. Save the "
              "model as .keras (model.save('model.keras')) and convert that file.")
        name = name.decode("utf8") if isinstance(name, bytes) else str(name)
        for i in sorted(variables, key=int):
          var = {0: "kernel", 1: "bias"}.get(int(i), f"var{i}")
          _add(index, name, var, variables[i], source)
      if "layers" in child:
        walk(child["layers"], f"{path}/layers")

  for top in ("layers", "_layer_checkpoint_dependencies"):
    if top in root:
      walk(root[top], top)
  return index


def _config_keys(config: dict, prefix: str = "layers") -> dict[str, str]:
  """`{"layers/conv2d": "block1_conv1", …}` from a `.keras` archive's `config.json`.

  Keras 3 keys each layer of a model by its class name in snake case, numbered in the order of
  `model.layers` (`conv2d`, `conv2d_1`, …), which is the order of the config's `layers`.
  """
  keys: dict[str, str] = {}
  used: dict[str, int] = {}
  for layer in (config.get("config") or {}).get("layers") or []:
    key = _snake_case(layer.get("class_name", ""))
    if key in used:
      used[key] += 1
      key = f"{key}_{used[key]}"
    else:
      used[key] = 0
    layer_config = layer.get("config") or {}
    keys[f"{prefix}/{key}"] = layer_config.get("name") or layer.get("name", "")
    if layer_config.get("layers"):
      keys.update(_config_keys(layer, f"{prefix}/{key}/layers"))
  return keys


def _snake_case(name: str) -> str:
  """Keras' `to_snake_case`: "Conv2D" → "conv2d", "MaxPooling2D" → "max_pooling2d"."""
  name = re.sub(r"\W+", "", name)
  name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
  return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _add(index: Index, layer: str, var: str, dataset, source: str) -> None:
  if not isinstance(dataset, h5py.Dataset):
    raise JaxvizError(f"{source}: damaged file: weight {var!r} of layer {layer!r} is not an "
                      "array")
  if var in index.setdefault(layer, {}):
    raise JaxvizError(f"{source}: layer {layer!r} appears twice in this file (its {var} is "
                      "stored twice); jaxviz cannot tell which to use.")
  index[layer][var] = dataset


def _check(index: Index, spec: ModelSpec, source: str) -> None:
  """Layer names, variables and shapes of the file against the model, before any data is read."""
  expected = spec.param_shapes()
  found = set(index)
  missing = [name for name in expected if name not in found]
  extra = sorted(found - set(expected))
  label = _label(spec)
  if missing or extra:
    hint = _other_model_hint(found, spec)
    if not found & set(expected):
      raise JaxvizError(
          f"{source}: a Keras file of another model: it holds layers {_short(sorted(found))}, "
          f"none of model {label} ({_short(list(expected))}).{hint}")
    raise JaxvizError(f"{source}: the weights do not match model {label}: "
                      f"missing layers {missing}, unexpected layers {extra}.{hint}")
  for layer, shapes in expected.items():
    if set(index[layer]) != set(shapes):
      raise JaxvizError(f"{source}: layer {layer!r} holds variables {sorted(index[layer])}; "
                        f"model {label} expects {sorted(shapes)}.")
    for var, shape in shapes.items():
      got = tuple(index[layer][var].shape)
      if got != tuple(shape):
        raise JaxvizError(f"{source}: shape mismatch at layer {layer!r} {var}: model {label} "
                          f"expects {tuple(shape)}, the file has {got}.{_layout_hint(got, shape)}")


def _label(spec: ModelSpec) -> str:
  if spec.name != "vgg16":
    return repr(spec.name)
  return f"'vgg16' ({'with' if spec.num_classes else 'without'} its top)"


def _other_model_hint(found: set[str], spec: ModelSpec) -> str:
  for name, other in MODELS.items():
    other = spec_for_layers(other, found)
    if name != spec.name and set(other.param_shapes()) == found:
      return f" The file holds the weights of model {name!r}: choose that model."
  return ""


def _layout_hint(got: tuple[int, ...], shape: tuple[int, ...]) -> str:
  if len(shape) == 4 and got == (shape[3], shape[2], shape[0], shape[1]):
    return (" The kernel is channels-first (a Theano-ordered file): use the "
            "'tf_dim_ordering_tf_kernels' file instead.")
  return ""


def _short(names: list[str], n: int = 6) -> str:
  return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "")
