"""Datasets for LeNet: MNIST through tensorflow-datasets, and the offline UCI digits.

Every dataset comes back in one form, ready for `jaxviz.models.lenet`: images `[N, 28, 28, 1]`
float32, ink intensity in [0, 1] (0 is the background, as in MNIST), and labels `[N]` int32.

    images, labels = load_dataset("digits", "train")
    images, labels = load_dataset("mnist", "test", data_dir="~/tensorflow_datasets")
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import os
import socket
import urllib.parse
from pathlib import Path

import numpy as np

from jaxviz.errors import JaxvizError, unknown

SPLITS = ("train", "test")

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MNIST_BUILDER = "jaxviz_mnist"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def load_dataset(name: str, split: str,
                 data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Loads split `split` ("train" or "test") of dataset `name` ("digits" or "mnist").

  Args:
    name: "digits" (UCI handwritten digits shipped with scikit-learn, made MNIST-like; offline)
      or "mnist" (prepared with tensorflow-datasets on first use).
    split: "train" or "test".
    data_dir: tensorflow-datasets data dir for MNIST; None or "" for its default
      (`$TFDS_DATA_DIR`, else `~/tensorflow_datasets`). Ignored for digits.

  Returns:
    `(images, labels)`: images `[N, 28, 28, 1]` float32 in [0, 1], labels `[N]` int32 in 0..9.
  """
  if name not in LOADERS:
    raise unknown("dataset", name, sorted(LOADERS))
  if split not in SPLITS:
    raise unknown("split", split, SPLITS)
  return LOADERS[name](split, data_dir or None)


# ---- UCI digits --------------------------------------------------------------------------------

def load_digits(split: str, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
  """The UCI digits (1797 images, 8×8, 0..16) as MNIST-like 28×28 images; see `load_dataset`.

  Each digit is scaled to 0..255, resized to 20×20 (bicubic) and centered in a 28×28 frame, as
  MNIST digits sit in a 20×20 box. The split is a fixed stratified 80/20 split: for each class,
  a seeded permutation puts the first 20 % in "test".
  """
  images, labels = _digits_all()
  test = digits_test_mask(labels)
  keep = test if split == "test" else ~test
  return images[keep], labels[keep]


def digits_test_mask(labels: np.ndarray, fraction: float = DIGITS_TEST_FRACTION,
                     seed: int = DIGITS_SPLIT_SEED) -> np.ndarray:
  """Boolean `[N]` mask of the held-out examples: `round(fraction * n_c)` of each class c."""
  rng = np.random.default_rng(seed)
  mask = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    chosen = rng.permutation(members)[:int(round(fraction * len(members)))]
    mask[chosen] = True
  return mask


@functools.cache
def _digits_all() -> tuple[np.ndarray, np.ndarray]:
  from sklearn.datasets import load_digits as sklearn_digits
  bunch = sklearn_digits()
  pixels = bunch.images * (255.0 / 16.0)
  images = np.stack([mnist_like(p) for p in pixels])
  images.setflags(write=False)
  labels = bunch.target.astype(np.int32)
  labels.setflags(write=False)
  return images, labels


def mnist_like(pixels: np.ndarray, box: int = 20, size: int = 28) -> np.ndarray:
  """A grey digit `[h, w]` in [0, 255] → `[size, size, 1]` float32 in [0, 1], resized to
  `box`×`box` and centered."""
  from PIL import Image
  resized = Image.fromarray(np.asarray(pixels, np.float32)).resize(
      (box, box), Image.Resampling.BICUBIC)
  digit = np.clip(np.asarray(resized, np.float32), 0.0, 255.0) / 255.0
  lo = (size - box) // 2
  out = np.zeros((size, size, 1), np.float32)
  out[lo:lo + box, lo:lo + box, 0] = digit
  return out


# ---- MNIST through tensorflow-datasets ---------------------------------------------------------

def load_mnist(split: str, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
  """MNIST from tensorflow-datasets' array_record files, prepared on first use; see
  `load_dataset`.

  Preparing reads the four IDX files from the manual dir (`<data_dir>/downloads/manual`) when
  they are all there, else downloads them from `MNIST_URL` with the TFDS download manager.
  Works without TensorFlow.
  """
  builder = mnist_builder(data_dir)
  with _absl_errors_only():  # TFDS warns that a dataset not prepared yet has no files.
    prepared = builder.is_prepared()
  if not prepared:
    prepare_mnist(builder)
  source = builder.as_data_source(split)
  records = source.__getitems__(list(range(len(source))))
  images = np.stack([r["image"] for r in records]).astype(np.float32) / 255.0
  labels = np.asarray([r["label"] for r in records], np.int32)
  return images, labels


def mnist_builder(data_dir=None):
  """The `jaxviz_mnist` TFDS builder rooted at `data_dir` (None: TFDS's default)."""
  if data_dir is not None:
    data_dir = os.path.expanduser(os.fspath(data_dir))
  return _mnist_builder_class()(data_dir=data_dir, file_format="array_record")


@contextlib.contextmanager
def _absl_errors_only():
  from absl import logging
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def mnist_manual_dir(builder) -> Path:
  """Where a person puts the four MNIST files by hand: `<data_dir>/downloads/manual`."""
  return Path(builder.data_dir_root) / "downloads" / "manual"


def prepare_mnist(builder) -> None:
  """Writes the array_record files, from the manual dir or a download; `JaxvizError` when
  neither is possible."""
  import tensorflow_datasets as tfds
  manual = mnist_manual_dir(builder)
  if not _manual_files(manual) and not _reachable(MNIST_URL):
    raise JaxvizError(f"cannot download MNIST: {urllib.parse.urlsplit(MNIST_URL).netloc} is "
                      f"not reachable. {_by_hand(manual)}")
  config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual), try_download_gcs=False)
  try:
    builder.download_and_prepare(
        download_dir=os.fspath(manual.parent), download_config=config)
  except JaxvizError:
    raise
  except Exception as e:  # The download manager raises many types; all mean "no data".
    raise JaxvizError(f"could not prepare MNIST ({type(e).__name__}: {e}). "
                      f"{_by_hand(manual)}") from e


def _by_hand(manual: Path) -> str:
  urls = " ".join(urllib.parse.urljoin(MNIST_URL, f) for f in MNIST_FILES.values())
  return (f"Download {urls} on a machine that can reach them, copy the four files (gzip'ed or "
          f"unpacked) into {manual}/ (or into downloads/manual/ of another data_dir), then run "
          "again.")


def _manual_files(manual: Path) -> dict[str, Path] | None:
  """The four IDX files in `manual` (gzip'ed, or unpacked without `.gz`), or None."""
  found = {}
  for key, name in MNIST_FILES.items():
    candidates = [manual / name, manual / name.removesuffix(".gz")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
      return None
    found[key] = path
  return found


def _reachable(url: str, timeout: float = 5.0) -> bool:
  """Whether a connection to `url`'s host opens; assumed True behind a configured proxy."""
  parts = urllib.parse.urlsplit(url)
  scheme = parts.scheme.lower()
  if any(os.environ.get(k) for k in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")):
    return True
  port = parts.port or (443 if scheme == "https" else 80)
  try:
    with socket.create_connection((parts.hostname, port), timeout=timeout):
      return True
  except OSError:
    return False


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file (gzip'ed or not): magic `00 00 <type> <ndim>`, big-endian uint32 dims,
  then the data. Returns an array of those dims (uint8 for MNIST)."""
  raw = Path(path).read_bytes()
  if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
  if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
    raise JaxvizError(f"{os.fspath(path)!r} is not an IDX file (magic {raw[:4].hex()}).")
  dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
  header = 4 + 4 * ndim
  dims = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4"))
  size = int(np.prod(dims)) * dtype.itemsize
  if len(dims) != ndim or len(raw) != header + size:
    raise JaxvizError(f"{os.fspath(path)!r} is truncated or damaged: header says {dims}, "
                      f"file holds {len(raw) - header} data bytes.")
  return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def read_mnist_pair(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
  """IDX images `[N, 28, 28]` uint8 and labels `[N]` uint8, checked against each other."""
  images, labels = read_idx(images_path), read_idx(labels_path)
  if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
    raise JaxvizError(f"MNIST files {os.fspath(images_path)!r} and {os.fspath(labels_path)!r} "
                      f"do not match: images {images.shape}, labels {labels.shape}.")
  return images, labels


@functools.cache
def _mnist_builder_class():
  import tensorflow_datasets as tfds

  class JaxvizMnist(tfds.core.GeneratorBasedBuilder):
    """MNIST from its four IDX files, written as array_record; no TensorFlow needed."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "
        f"and t10k-labels-idx1-ubyte.gz from {MNIST_URL} in the manual dir.")

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          description="The MNIST database of handwritten digits, read from its IDX files.",
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
              "label": tfds.features.ClassLabel(num_classes=10),
          }),
          supervised_keys=("image", "label"),
          homepage="http://yann.lecun.com/exdb/mnist/",
      )

    def _split_generators(self, dl_manager):
      try:
        files = _manual_files(Path(os.fspath(dl_manager.manual_dir)))
      except AssertionError:  # TFDS's way of saying the manual dir is missing or empty.
        files = None
      if files is None:
        files = dl_manager.download(
            {k: urllib.parse.urljoin(MNIST_URL, v) for k, v in MNIST_FILES.items()})
      return {split: self._generate_examples(files[f"{split}_images"], files[f"{split}_labels"])
              for split in SPLITS}

    def _generate_examples(self, images_path, labels_path):
      images, labels = read_mnist_pair(images_path, labels_path)
      for i, (image, label) in enumerate(zip(images, labels)):
        yield i, {"image": image[..., None], "label": int(label)}

  return JaxvizMnist


LOADERS = {"digits": load_digits, "mnist": load_mnist}
