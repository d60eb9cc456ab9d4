"""Input images for the views: image files, or examples of a dataset, ready for a model.

A source is a comma-separated list of entries, each an image file (any size and format Pillow
reads) or `DATASET:INDICES`, examples of a dataset's test split (e.g. `digits:0-9`):

    batch = load_images("cat.jpg,dog.png", spec)         # resized to the model's input
    batch = load_images("digits:0,5,12", LENET)          # the offline digits, as LeNet sees them

Files are converted to RGB or grey as the model's channels say, resized (bilinear) to the
model's input size, and preprocessed with `spec.preprocess`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxviz.errors import JaxvizError
from jaxviz.models.spec import ModelSpec
from jaxviz.ranges import parse_indices

DATASETS = ("digits", "mnist")
# Pillow's modes for 16-bit grey files (PNG, TIFF); "I" is how some versions open 16-bit PNGs.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I")


@dataclasses.dataclass(frozen=True)
class ImageBatch:
  """Images ready for a model, with what is needed to show them.

  names: one per image: the file name, or `dataset:index`.
  pixels: `[N, H, W, C]` float32 in [0, 255] (RGB or grey), at the model's input size.
  inputs: `[N, H, W, C]` float32, `spec.preprocess(pixels)`: what the model takes.
  labels: the dataset label per image; None for files.
  """
  names: list[str]
  pixels: np.ndarray
  inputs: np.ndarray
  labels: list[int | None]

  def __len__(self) -> int:
    return len(self.names)


def load_images(source: str | Sequence[str], spec: ModelSpec, size: int | None = None, *,
                invert: bool = False, data_dir: str | None = None) -> ImageBatch:
  """Reads every entry of `source` and prepares it for `spec` at `size` (None: its default).

  Args:
    source: "a.png,b.jpg,digits:0-3", or a list of such entries.
    invert: use `255 - pixels`, e.g. for dark digits on light paper shown to LeNet, which
      was trained on light strokes on black.
    data_dir: tensorflow-datasets data dir, for `mnist:` entries.
  """
  shape = spec.input_shape_for(size)
  entries = split_source(source)
  names, pixels, labels = [], [], []
  for entry in entries:
    dataset, indices = parse_dataset_entry(entry)
    if dataset is None:
      names.append(Path(entry).name)
      pixels.append(read_image(entry, shape))
      labels.append(None)
    else:
      images, targets = _dataset(dataset, data_dir)
      for i in example_indices(indices, len(images), entry):
        names.append(f"{dataset}:{i}")
        pixels.append(fit(images[i] * 255.0, shape))
        labels.append(int(targets[i]))
  batch = np.stack(pixels).astype(np.float32)
  if invert:
    batch = 255.0 - batch
  inputs = np.asarray(spec.preprocess(batch), np.float32)
  return ImageBatch(names, batch, inputs, labels)


def split_source(source: str | Sequence[str]) -> list[str]:
  """`"a.png, digits:0,3"` → `["a.png", "digits:0,3"]`. A file whose name holds commas stays
  one entry: parts are joined back wherever the joined text names an existing file."""
  entries = _split_keeping_files(source) if isinstance(source, str) else list(source)
  entries = [str(e).strip() for e in entries if str(e).strip()]
  if not entries:
    raise JaxvizError("no input image given: set images to image files or to dataset "
                      "examples like 'digits:0-9'")
  return _join_index_lists(entries)


def _split_keeping_files(source: str) -> list[str]:
  parts, entries, i = source.split(","), [], 0
  while i < len(parts):
    j = next((j for j in range(len(parts), i + 1, -1)
              if os.path.isfile(",".join(parts[i:j]).strip())), i + 1)
    entries.append(",".join(parts[i:j]))
    i = j
  return entries


def _join_index_lists(entries: list[str]) -> list[str]:
  """`["digits:0", "3", "5-7"]` (split on commas) → `["digits:0,3,5-7"]`."""
  out = []
  for entry in entries:
    if out and _is_indices(entry) and parse_dataset_entry(out[-1])[0] is not None:
      out[-1] += "," + entry
    else:
      out.append(entry)
  return out


def _is_indices(text: str) -> bool:
  return all(part.isdigit() for part in text.split("-")) and not os.path.exists(text)


def parse_dataset_entry(entry: str) -> tuple[str | None, str]:
  """`"digits:0-3"` → `("digits", "0-3")`; an existing file or any other text → `(None, entry)`."""
  name, colon, rest = entry.partition(":")
  if colon and name in DATASETS and not os.path.exists(entry):
    return name, rest
  return None, entry


def example_indices(text: str, count: int, entry: str) -> list[int]:
  """`"0,3,10-12"` → `[0, 3, 10, 11, 12]`, each checked against the split's `count` examples."""
  if not text.strip():
    raise JaxvizError(f"bad image entry {entry!r}: no example indices after the colon")
  try:
    return parse_indices(text, count, name="examples", unit="example", owner="the test split",
                         example="digits:0,3,10-19")
  except JaxvizError as e:
    raise JaxvizError(f"bad image entry {entry!r}: {e}") from None


def check_files(source: str | Sequence[str]) -> None:
  """Fails early, before a model is loaded, when an image file is missing."""
  for entry in split_source(source):
    if parse_dataset_entry(entry)[0] is None:
      _check_file(entry)


def _check_file(path: str) -> None:
  if not os.path.exists(path):
    raise JaxvizError(f"image file {path!r} does not exist")
  if os.path.isdir(path):
    raise JaxvizError(f"image file {path!r} is a directory, not an image")


def read_image(path: str | os.PathLike, shape: tuple[int, int, int]) -> np.ndarray:
  """Image file → `[H, W, C]` float32 pixels in [0, 255], grey (C=1) or RGB (C=3), resized
  to `shape`'s H×W with bilinear filtering. 16-bit grey files are scaled by 255/65535."""
  path = os.fspath(path)
  _check_file(path)
  h, w, c = shape
  try:
    with Image.open(path) as image:
      if image.mode in SIXTEEN_BIT_MODES:  # 16-bit grey: scaled onto 0–255, not clipped
        return fit(np.asarray(image, np.float32)[..., None] * (255 / 65535), shape)
      image = image.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
      pixels = np.asarray(image, np.float32)
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise JaxvizError(f"cannot read image file {path!r}: {e}") from None
  return pixels[..., None] if c == 1 else pixels


def fit(pixels: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
  """Pixels `[h, w, 1 or 3]` in [0, 255] → `[H, W, C]` at `shape`: channels repeated or
  averaged to C, resized bilinearly when the size differs."""
  h, w, c = shape
  pixels = np.asarray(pixels, np.float32)
  if pixels.shape[-1] != c:
    pixels = (np.repeat(pixels, c, axis=-1) if pixels.shape[-1] == 1
              else pixels.mean(axis=-1, keepdims=True))
  if pixels.shape[:2] != (h, w):
    channels = [np.asarray(Image.fromarray(pixels[..., k]).resize(
        (w, h), Image.Resampling.BILINEAR)) for k in range(c)]
    pixels = np.stack(channels, axis=-1)
  return pixels


def _dataset(name: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  from jaxviz import data
  return data.load_dataset(name, "test", data_dir)
