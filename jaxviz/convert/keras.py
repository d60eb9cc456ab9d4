"""Keras weight files → jaxviz parameters, for every layout Keras has written.

Layouts, and how each is recognized (read with h5py and zipfile only; Keras is not needed):
  - Keras 2 weights files, among them the ImageNet files
    `vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5`: root attribute `layer_names`; one
    group per layer whose attribute `weight_names` lists its datasets, e.g.
    `block1_conv1_W_1:0` and `block1_conv1_b_1:0` (or `block1_conv1/kernel:0`).
  - legacy full models (`model.save("x.h5")`): the same under the group `model_weights`, with
    weight names like `block1_conv1/kernel`. A nested model (a VGG16 inside a Sequential) is
    one group holding all its layers' weights, `vgg16/block1_conv1/kernel`, in layer order.
  - Keras 3 `.weights.h5`: `layers/<conv2d, conv2d_1, …>/vars/{0: kernel, 1: bias}`, a nested
    model's layers under `layers/<functional>/layers/…`, a subclassed model's under its
    attribute names. The keys number layers by class in layer order (`conv2d_2` comes before
    `conv2d_10`), not by name; the Keras name is the attribute `name` of `vars` (Keras ≥ 3.6).
    Older files record no names: inside a `.keras` archive the names are taken from its
    `config.json`, the way Keras numbers the keys.
  - `.keras`: a zip archive holding `config.json` and `model.weights.h5` in the layout above;
    the config also gives the order of layers of different classes.

Weights are matched to the model by layer name. For VGG16 a file may hold more than VGG16
(a VGG16 inside a transfer-learning model, with its own head): when every VGG16 convolution is
found by name, the other layers are not used; when none is (the layers were renamed), VGG16's
13 convolutions are found by order and shape: the one run of 13 consecutive weighted layers
with VGG16's kernel shapes, followed by `fc1`, `fc2` and `predictions` when the next three
layers have their shapes. Either way the mapping is reported (`format_mapping`), and anything
ambiguous or incomplete is refused.

Every layer and shape is checked before any array is read; arrays are then read one at a time,
and `convert` writes each to the checkpoint before reading the next, so converting a 528 MB
file needs memory for its largest array only.

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
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from jaxviz import checkpoint
from jaxviz.errors import JaxvizError
from jaxviz.models import MODELS, ModelSpec, get_spec, spec_for_layers
from jaxviz.models.spec import Params

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
ARCHIVE_WEIGHTS = "model.weights.h5"
ARCHIVE_CONFIG = "config.json"

# Bounds on the archive members jaxviz reads, checked on their declared sizes before reading:
# the weights (VGG16 with its top, with an optimizer's state, is under 2 GB) and the config.
MAX_WEIGHTS_BYTES = 8 << 30
MAX_CONFIG_BYTES = 64 << 20
# Uncompressed / compressed size above which a member larger than RATIO_FLOOR_BYTES is refused
# as a zip bomb. Weights compress about 1.1:1 (Keras stores them uncompressed); zeros 1000:1.
MAX_COMPRESSION_RATIO = 100
RATIO_FLOOR_BYTES = 16 << 20

# Top-level groups of a Keras 3 weights file that hold no layers.
NOT_LAYERS = ("optimizer", "vars")

# {layer name: {"kernel" | "bias" | other variable name: dataset}}
Index = dict[str, dict[str, h5py.Dataset]]
# ((layer in the file, jaxviz layer or None when not used), …) in the file's layer order.
Mapping = tuple[tuple[str, str | None], ...]


@dataclasses.dataclass(frozen=True)
class Converted:
  """Parameters read from a Keras file, with the model variant they fit, the file's layout and,
  when the file's layers are not exactly the model's, how they were mapped (see `Mapping`)."""
  spec: ModelSpec
  params: Params
  layout: str
  mapping: Mapping = ()
  mapped_by: str = ""


@dataclasses.dataclass
class FileLayer:
  """A layer with weights in a Keras file.

  Attributes:
    path: where the file keeps it, e.g. `layers/functional/layers/conv2d_3` or
      `vgg16/block2_conv2`.
    name: its Keras name, e.g. `block2_conv2`.
    variables: `{"kernel" | "bias" | other: dataset}`.
    container: the path of the model holding it ("" for the outermost model).
    kind: its class key in a Keras 3 file ("conv2d" for `conv2d_3`), else "".
  """
  path: str
  name: str
  variables: dict[str, h5py.Dataset]
  container: str = ""
  kind: str = ""

  @property
  def label(self) -> str:
    """The path, with the Keras name when the path does not end with it."""
    return self.path if self.path.rsplit("/", 1)[-1] == self.name else \
        f"{self.path} ({self.name})"

  def shapes(self) -> dict[str, tuple[int, ...]]:
    return {var: tuple(ds.shape) for var, ds in self.variables.items()}


@dataclasses.dataclass(frozen=True)
class _Match:
  """The model variant a file's layers fit, and which layer of the file is which."""
  spec: ModelSpec
  index: Index
  mapping: Mapping = ()
  mapped_by: str = ""


def read(path: str | os.PathLike, spec: ModelSpec) -> Converted:
  """Reads the weights of model `spec` from a Keras file of any layout.

  For VGG16 the variant comes from the file: with the top when it holds `fc1`, `fc2` and
  `predictions`, else without (see `jaxviz.models.spec_for_layers`). A file holding more than
  VGG16 gives the VGG16 in it (see the module docstring); `Converted.mapping` says how.

  Raises `JaxvizError` naming the file when it is not HDF5 or zip, is truncated or damaged,
  holds another model's weights, misses a layer or has one too many, or has a wrong shape
  (naming the layer, the expected and the found shape).
  """
  path = Path(path)
  with _matched(path, spec) as (layout, match):
    params = {layer: {var: _read_array(ds, str(path)) for var, ds in variables.items()}
              for layer, variables in match.index.items()}
  return Converted(match.spec, params, layout, match.mapping, match.mapped_by)


def convert(src: str | os.PathLike, dst: str | os.PathLike, model: str | ModelSpec = "vgg16",
            metadata: dict | None = None) -> Path:
  """Converts Keras file `src` to the jaxviz checkpoint `dst` (`.msgpack`, plus a `.json` copy
  of its metadata) for model `model` (a registered name or a spec). Returns `dst`.

  Arrays are read from `src` one at a time and written to `dst` as they are read. Every layer
  and shape is checked first, and the checkpoint is written atomically, so on any error nothing
  is written at `dst`. A mapping of renamed or nested layers is printed to stderr.
  """
  src, dst = Path(src), Path(dst)
  if dst.suffix != ".msgpack":
    raise JaxvizError(f"output {str(dst)!r} must be a jaxviz checkpoint path ending in "
                      ".msgpack, e.g. vgg16.msgpack")
  checkpoint.require_file(src, "Keras file")
  if dst.exists() and dst.resolve() == src.resolve():
    raise JaxvizError("the output would overwrite the input; choose another output path")
  spec = get_spec(model) if isinstance(model, str) else model
  source = str(src)
  with _matched(src, spec) as (layout, match):
    checkpoint.check_params(match.index, match.spec, source=source)
    report_mapping(source, match.spec, match.mapping, match.mapped_by)
    info = {"source": src.name, "layout": layout, "num_classes": match.spec.num_classes,
            **({"mapping": format_mapping(match.mapping)} if match.mapping else {}),
            **(metadata or {})}
    leaves = {layer: {var: _reader(ds, source) for var, ds in variables.items()}
              for layer, variables in match.index.items()}
    return checkpoint.save(dst, match.spec.name, leaves, info, dtype=np.float32)


def format_mapping(mapping: Mapping) -> list[str]:
  """One line per layer of the file: `file layer → jaxviz layer` (or `→ not used`)."""
  return [f"{layer} → {target or 'not used'}" for layer, target in mapping]


def report_mapping(source: str, spec: ModelSpec, mapping: Mapping, mapped_by: str,
                   stream=None) -> None:
  """Prints a non-trivial mapping (see `format_mapping`) to `stream` (stderr), with a header."""
  if not mapping:
    return
  stream = stream or sys.stderr
  print(f"{source}: layers mapped by {mapped_by} onto model {_label(spec)}:", file=stream)
  for line in format_mapping(mapping):
    print(f"  {line}", file=stream)


def _damaged(source: str, e: Exception) -> JaxvizError:
  return JaxvizError(f"{source}: cannot read this Keras file; it may be truncated or damaged "
                     f"({type(e).__name__}: {e}). Download or save it again.")


@contextlib.contextmanager
def _matched(path: Path, spec: ModelSpec) -> Iterator[tuple[str, _Match]]:
  """Opens Keras file `path` and matches its layers to `spec`: yields `(layout, match)`, the
  datasets still unread. Damaged files raise `JaxvizError`; errors in the body pass as they are."""
  source = str(path)
  with contextlib.ExitStack() as stack:
    try:
      root, config = stack.enter_context(open_weights(path))
      layout, layers, ordered = _index(root, config, source)
      match = _match(layers, spec, ordered, source)
    except (JaxvizError, MemoryError):
      raise
    except Exception as e:  # h5py and zipfile raise many types on damaged files.
      raise _damaged(source, e) from None
    yield layout, match


def _read_array(ds: h5py.Dataset, source: str) -> np.ndarray:
  """Dataset `ds` as float32, `[…]` in its stored shape."""
  try:
    return np.asarray(ds[()], np.float32)
  except MemoryError:
    raise
  except Exception as e:
    raise _damaged(source, e) from None


def _reader(ds: h5py.Dataset, source: str):
  """A function reading `ds` when called, for `checkpoint.save`."""
  return lambda: _read_array(ds, source)


@contextlib.contextmanager
def open_weights(path: Path) -> Iterator[tuple[h5py.Group, dict | None]]:
  """Opens the HDF5 weights of a Keras file: yields `(root group, model config or None)`.

  For a `.keras` archive the weights member is read in place when stored uncompressed (as
  Keras writes it), else through a temporary copy on disk; never whole into memory. The
  members' declared sizes are checked against bounds first (see `_check_member`).
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
      _check_member(path, zf.getinfo(ARCHIVE_CONFIG), MAX_CONFIG_BYTES)
      config = json.loads(zf.read(ARCHIVE_CONFIG))
    info = zf.getinfo(ARCHIVE_WEIGHTS)
    _check_member(path, info, MAX_WEIGHTS_BYTES)
    with contextlib.ExitStack() as stack:
      if info.compress_type == zipfile.ZIP_STORED:
        raw = stack.enter_context(open(path, "rb"))
        member = _FileSlice(raw, _data_offset(raw, info), info.file_size)
      else:
        _check_free_space(path, info)
        member = stack.enter_context(tempfile.TemporaryFile())
        _extract(zf, info, member, path)
        member.seek(0)
      root = stack.enter_context(h5py.File(member, "r"))
      yield root, config


def _size(n: int) -> str:
  return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def _check_member(path: Path, info: zipfile.ZipInfo, bound: int) -> None:
  """Refuses archive member `info` on its declared sizes, before any of it is read: larger than
  `bound` uncompressed, or compressed more than `MAX_COMPRESSION_RATIO`:1 (a zip bomb)."""
  where = f"{str(path)}: archive member {info.filename!r}"
  if info.file_size > bound:
    raise JaxvizError(
        f"{where} declares {_size(info.file_size)} uncompressed, over jaxviz's bound of "
        f"{_size(bound)} for it; it was not extracted. A Keras model file is not that large: "
        "check that this is the file you meant.")
  ratio = info.file_size / max(info.compress_size, 1)
  if (info.compress_type != zipfile.ZIP_STORED and info.file_size > RATIO_FLOOR_BYTES
      and ratio > MAX_COMPRESSION_RATIO):
    raise JaxvizError(
        f"{where} declares {_size(info.file_size)} uncompressed from "
        f"{_size(info.compress_size)} ({ratio:.0f}:1), over jaxviz's bound of "
        f"{MAX_COMPRESSION_RATIO}:1 for compressed members (weights hardly compress; this is how "
        "zip bombs look); it was not extracted. If you trust the file, extract "
        f"{info.filename} yourself and pass that file instead.")


def _check_free_space(path: Path, info: zipfile.ZipInfo) -> None:
  """Refuses to copy a compressed member to the temporary folder when it does not fit there."""
  folder = tempfile.gettempdir()
  free = shutil.disk_usage(folder).free
  if info.file_size > free:
    raise JaxvizError(
        f"{str(path)}: archive member {info.filename!r} needs {_size(info.file_size)} in the "
        f"temporary folder {folder}, which has {_size(free)} free. Set TMPDIR to a folder "
        "with more space, or extract the member yourself and pass that file.")


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out, path: Path) -> None:
  """Copies member `info` to file `out` in blocks of 1 MiB, never past its declared size."""
  written = 0
  with zf.open(info) as member:
    while block := member.read(1 << 20):
      written += len(block)
      if written > info.file_size:
        raise JaxvizError(f"{str(path)}: archive member {info.filename!r} holds more than the "
                          f"{info.file_size} bytes it declares: a damaged or crafted archive.")
      out.write(block)


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


# Reading the layers of a file, in their real order.

def _index(root: h5py.Group, config: dict | None,
           source: str) -> tuple[str, list[FileLayer], bool]:
  """`(layout name, the layers holding weights, ordered)`.

  The layers come in model order; `ordered` is False when the file records the order only
  among layers of one class in one model (a Keras 3 file without a config listing them).
  """
  if "model_weights" in root:
    return "legacy full-model .h5", _layers_legacy(root["model_weights"], source), True
  if _attr_list(root, "layer_names"):
    return "Keras 2 weights .h5", _layers_legacy(root, source), True
  if "layers" in root or "_layer_checkpoint_dependencies" in root or _has_layers(root):
    layout = "Keras 3 .keras archive" if config is not None else "Keras 3 .weights.h5"
    return (layout, *_layers_keras3(root, config, source))
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


def _layers_legacy(group: h5py.Group, source: str) -> list[FileLayer]:
  """Keras 2 and legacy .h5: groups in the order of `layer_names`, datasets in the order of
  each group's `weight_names`; a nested model's group holds `<layer>/<var>` for each layer."""
  layers: list[FileLayer] = []
  for group_name in _attr_list(group, "layer_names"):
    if group_name not in group:
      raise JaxvizError(f"{source}: damaged file: layer {group_name!r} is listed but has no "
                        "group")
    layer_group = group[group_name]
    weight_names = _attr_list(layer_group, "weight_names")
    parents = {name.rsplit("/", 1)[0] for name in weight_names if "/" in name}
    nested = len(parents) > 1
    found: dict[str, FileLayer] = {}
    for weight_name in weight_names:
      name = weight_name.split("/")[-2] if nested else group_name
      path = f"{group_name}/{name}" if nested else group_name
      layer = found.setdefault(path, FileLayer(path, name, {}, group_name if nested else ""))
      _add(layer, _variable(weight_name), layer_group[weight_name], source)
    layers += found.values()
  return layers


def _variable(weight_name: str) -> str:
  """`block1_conv1_W_1:0`, `block1_conv1/kernel:0`, `kernel` → "kernel"; likewise "bias"."""
  base = re.sub(r"_\d+$", "", weight_name.rsplit("/", 1)[-1].split(":")[0])
  if base == "kernel" or base.endswith("_W"):
    return "kernel"
  if base == "bias" or base.endswith("_b"):
    return "bias"
  return base


def _has_layers(root: h5py.Group) -> bool:
  """Whether a Keras 3 file of a subclassed model (layers under attribute names) holds any."""
  found = []
  root.visit(lambda name: found.append(name) if name.endswith("/vars") and
             not name.startswith(NOT_LAYERS) else None)
  return bool(found)


def _layers_keras3(root: h5py.Group, config: dict | None,
                   source: str) -> tuple[list[FileLayer], bool]:
  """Keras 3: every group `<path>/vars` holding variables `0, 1, …` is a layer at `<path>`.

  Sequential and functional models keep their layers in `<model>/layers`, a subclassed one
  under its attribute names; the optimizer's state is skipped. The order is the config's when
  it lists every layer, else the keys' numbering (`ordered` False).
  """
  names = _config_keys(config) if config else {}
  layers: list[FileLayer] = []

  def walk(group: h5py.Group, prefix: str) -> None:
    for key in group:
      child = group[key]
      if key in NOT_LAYERS and not prefix or key == "vars" or not isinstance(child, h5py.Group):
        continue
      path = f"{prefix}{key}"
      variables = child.get("vars")
      if isinstance(variables, h5py.Group) and len(variables):
        layers.append(_keras3_layer(path, key, variables, names.get(path), source))
      walk(child, f"{path}/")

  walk(root, "")
  position = {path: i for i, path in enumerate(names)}
  if layers and all(layer.path in position for layer in layers):
    return sorted(layers, key=lambda layer: position[layer.path]), True
  return sorted(layers, key=lambda layer: _natural_key(layer.path)), False


def _keras3_layer(path: str, key: str, variables: h5py.Group, config_name: str | None,
                  source: str) -> FileLayer:
  name = variables.attrs.get("name") or config_name
  if not name:
    raise JaxvizError(
        f"{source}: layer {path!r} has no recorded name (files of Keras 3.0–3.5 record none "
        "in .weights.h5), and jaxviz needs names to map weights. Save the model as .keras "
        "(model.save('model.keras')) and convert that file.")
  name = name.decode("utf8") if isinstance(name, bytes) else str(name)
  layer = FileLayer(path, name, {}, _container(path), re.sub(r"_\d+$", "", key))
  for i in sorted(variables, key=int):
    _add(layer, {0: "kernel", 1: "bias"}.get(int(i), f"var{i}"), variables[i], source)
  return layer


def _container(path: str) -> str:
  """The model holding the layer at `path`: `layers/functional/layers/conv2d` →
  `layers/functional`; `layers/dense` and `head` → "" (the outermost model)."""
  parent = path.rsplit("/", 1)[0] if "/" in path else ""
  return parent[:-len("/layers")] if parent.endswith("/layers") else \
      ("" if parent == "layers" else parent)


def _natural_key(path: str) -> list[tuple[str, int]]:
  """Sorts Keras keys in layer order within a class: `conv2d`, `conv2d_2`, `conv2d_10`."""
  key = []
  for part in path.split("/"):
    match = re.fullmatch(r"(.*?)_(\d+)", part)
    key.append((match[1], int(match[2])) if match else (part, 0))
  return key


def _config_keys(config: dict, prefix: str = "layers") -> dict[str, str]:
  """`{"layers/conv2d": "block1_conv1", …}` from a `.keras` archive's `config.json`, in the
  config's layer order (a nested model's layers right after it).

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


def _add(layer: FileLayer, var: str, dataset, source: str) -> None:
  if not isinstance(dataset, h5py.Dataset):
    raise JaxvizError(f"{source}: damaged file: weight {var!r} of layer {layer.name!r} is not "
                      "an array")
  if var in layer.variables:
    raise JaxvizError(f"{source}: layer {layer.name!r} appears twice in this file (its {var} "
                      "is stored twice); jaxviz cannot tell which to use.")
  layer.variables[var] = dataset


# Matching the file's layers to the model.

def _match(layers: list[FileLayer], spec: ModelSpec, ordered: bool, source: str) -> _Match:
  """Which layer of the file is which layer of `spec`: by name when the names are the model's;
  for VGG16 also inside a larger model (`_match_vgg16_names`) or renamed
  (`_match_vgg16_order`)."""
  names = [layer.name for layer in layers]
  variant = spec_for_layers(spec, names)
  if spec.name != "vgg16" or set(names) == set(variant.param_shapes()):
    index = _unique_index(layers, list(variant.param_shapes()), source)
    _check(index, variant, source)
    return _Match(variant, index)
  from jaxviz.models import vgg16
  if set(names) & set(vgg16.VGG16.conv_layer_names):
    return _match_vgg16_names(layers, source)
  return _match_vgg16_order(layers, ordered, source)


def _unique_index(layers: list[FileLayer], wanted: list[str], source: str) -> Index:
  """`{name: variables}` of `layers`; a layer of `wanted` found twice is refused."""
  index: Index = {}
  for layer in layers:
    if layer.name in index and layer.name in wanted:
      twins = " and ".join(other.path for other in layers if other.name == layer.name)
      raise JaxvizError(
          f"{source}: layer {layer.name!r} appears twice in this file (at {twins}): it holds "
          "two candidate sets of weights and jaxviz cannot tell which to use. Save the model "
          "you mean alone (e.g. model.get_layer(NAME).save('vgg16.keras')) and convert that.")
    index.setdefault(layer.name, layer.variables)
  return index


def _match_vgg16_names(layers: list[FileLayer], source: str) -> _Match:
  """VGG16 inside a larger model, its layers keeping their names: VGG16's layers by name, the
  top when `fc1`, `fc2` and `predictions` are all there with VGG16's shapes; others not used."""
  from jaxviz.models import vgg16
  top_shapes = vgg16.VGG16_TOP.param_shapes()
  named = {layer.name: layer for layer in layers}
  has_top = all(name in named and named[name].shapes() == top_shapes[name]
                for name in vgg16.TOP_LAYER_NAMES)
  spec = vgg16.VGG16_TOP if has_top else vgg16.VGG16
  expected = list(spec.param_shapes())
  index = _unique_index(layers, expected, source)
  missing = [name for name in expected if name not in index]
  if missing:
    extra = [name for name in index if name not in expected]
    raise JaxvizError(f"{source}: the weights do not match model {_label(spec)}: "
                      f"missing layers {missing}, unexpected layers {extra}.")
  index = {name: index[name] for name in expected}
  _check(index, spec, source)
  used = {id(named[name]) for name in expected}
  mapping = tuple((layer.label, layer.name if id(layer) in used else None) for layer in layers)
  return _Match(spec, index, mapping, "name")


def _match_vgg16_order(layers: list[FileLayer], ordered: bool, source: str) -> _Match:
  """Renamed VGG16: its 13 convolutions are the one run of 13 consecutive weighted layers (in
  one model) with VGG16's shapes; the top follows when the next three layers fit it."""
  from jaxviz.models import vgg16
  shapes = vgg16.VGG16_TOP.param_shapes()
  convs = vgg16.VGG16.conv_layer_names
  runs = [i for i in range(len(layers) - len(convs) + 1)
          if _fits(layers[i:i + len(convs)], [shapes[n] for n in convs])]
  if not runs:
    raise JaxvizError(_no_run_message(layers, [shapes[n] for n in convs], source))
  if len(runs) > 1:
    starts = " and ".join(layers[i].label for i in runs[:2])
    raise JaxvizError(
        f"{source}: the layer names are not VGG16's, and {len(runs)} runs of 13 convolutions "
        f"with VGG16's shapes were found (starting at {starts}): two candidate sets of weights, "
        "so jaxviz cannot tell which is the VGG16 to load. Save that part alone (e.g. "
        "model.get_layer(NAME).save('vgg16.keras')) and convert it.")
  start = runs[0]
  run = layers[start:start + len(convs)]
  if not ordered:
    _check_unordered(layers, run, source)
  top = layers[start + len(convs):start + len(convs) + len(vgg16.TOP_LAYER_NAMES)]
  has_top = _fits(top, [shapes[n] for n in vgg16.TOP_LAYER_NAMES])
  spec = vgg16.VGG16_TOP if has_top else vgg16.VGG16
  targets = dict(zip(map(id, run + (top if has_top else [])), spec.param_shapes()))
  index = {target: layer.variables for layer in layers
           if (target := targets.get(id(layer)))}
  mapping = tuple((layer.label, targets.get(id(layer))) for layer in layers)
  return _Match(spec, index, mapping, "order and shape")


def _fits(layers: list[FileLayer], shapes: list[dict]) -> bool:
  """Whether `layers`, in one model, have exactly the variable shapes `shapes`, in order."""
  return (len(layers) == len(shapes) and len({layer.container for layer in layers}) == 1
          and all(layer.shapes() == dict(shape) for layer, shape in zip(layers, shapes)))


def _check_unordered(layers: list[FileLayer], run: list[FileLayer], source: str) -> None:
  """In a file ordering layers only within a class, the run's model may hold no weighted layers
  of another class than its convolutions' and dense ones, whose place would be unknown."""
  kinds = {layer.kind for layer in run}
  unplaced = [layer.label for layer in layers if layer.container == run[0].container
              and layer.kind not in kinds | {"dense"}]
  if len(kinds) > 1 or unplaced:
    raise JaxvizError(
        f"{source}: the layer names are not VGG16's, and this file records the order of layers "
        f"only among layers of one class, so jaxviz cannot tell where {_short(unplaced)} sit "
        "among the convolutions. Save the model as .keras (model.save('model.keras')) and "
        "convert that file.")


def _no_run_message(layers: list[FileLayer], shapes: list[dict], source: str) -> str:
  """Why no run of layers fits VGG16's convolutions: the longest partial run and where it ends,
  or, when no layer has a VGG16 shape at all, that the file holds another model."""
  from jaxviz.models import vgg16
  names = [layer.name for layer in layers]
  if not any(layer.shapes() in [dict(s) for s in shapes] for layer in layers):
    hint = _other_model_hint(set(names), vgg16.VGG16)
    return (f"{source}: a Keras file of another model: it holds layers {_short(names)}, none "
            f"of model {_label(vgg16.VGG16)} by name or by shape "
            f"({_short(vgg16.VGG16.conv_layer_names)}).{hint}")
  best, end = 0, 0
  for i in range(len(layers)):
    n = 0
    while n < len(shapes) and _fits(layers[i:i + n + 1], shapes[:n + 1]):
      n += 1
    if n > best:
      best, end = n, i + n
  kernels = sum(1 for layer in layers if len(layer.shapes().get("kernel", ())) == 4)
  conv = vgg16.VGG16.conv_layer_names[best]
  if best == 0:
    where = f"no layer has the shapes of {conv}, {_shapes_text(shapes[0])}"
  else:
    after = (f"then {layers[end].label} has {_shapes_text(layers[end].shapes())}"
             if end < len(layers) else "then the layers end")
    where = (f"the longest run fitting VGG16 is {best} layers, from {layers[end - best].label}; "
             f"{after}, where {conv} needs {_shapes_text(shapes[best])}")
  return (f"{source}: the layer names are not VGG16's, and no 13 consecutive layers of one "
          f"model have VGG16's convolution shapes: the file holds {kernels} convolutions "
          f"(VGG16 has 13); {where}. Check that the model holds a whole VGG16 (3×3 kernels; "
          "2, 2, 3, 3, 3 convolutions of 64, 128, 256, 512, 512 filters).")


def _shapes_text(shapes: dict[str, tuple[int, ...]]) -> str:
  """`{"bias": (64,), "kernel": (3, 3, 3, 64)}` → "kernel (3, 3, 3, 64), bias (64,)"."""
  return ", ".join(f"{var} {tuple(shapes[var])}" for var in sorted(shapes, key=lambda v: (
      v != "kernel", v != "bias", v)))


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
