"""Getting pretrained weights: the Keras ImageNet files for VGG16, downloaded once into the
jaxviz cache, checked against their published MD5 hash, and converted to a checkpoint.

    jaxviz fetch-weights vgg16          # the convolutional base (58 MB), for galleries
    jaxviz fetch-weights vgg16 --top    # with the classifier top (528 MB), for class outputs

Without network access it fails at once, naming the address and where to place the file by
hand; a file placed there is verified and converted like a downloaded one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from jaxviz.errors import JaxvizError
from jaxviz.cache import cache_dir, default_weights_path

BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class KerasWeights:
  """A published Keras weights file: where it is and its MD5 hash (as `keras.applications`
  checks it)."""
  url: str
  md5: str

  @property
  def filename(self) -> str:
    return self.url.rsplit("/", 1)[-1]


# (model, with top) → file; the hashes are the ones keras/src/applications/vgg16.py checks.
KERAS_WEIGHTS = {
    ("vgg16", False): KerasWeights(
        BASE_URL + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc"),
    ("vgg16", True): KerasWeights(
        BASE_URL + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b"),
}


def keras_cache_dir() -> Path:
  """Where downloaded Keras files are kept: `<jaxviz cache>/keras`."""
  return cache_dir() / "keras"


def fetch(model: str = "vgg16", top: bool = False, *, source: KerasWeights | None = None,
          timeout: float = 10.0, force: bool = False) -> Path:
  """Downloads (unless cached), verifies and converts the Keras ImageNet weights of `model`.

  Args:
    model: a model with published Keras weights ("vgg16").
    top: the file with the classifier top instead of the convolutional base.
    source: another file to fetch (url and md5) instead of the published one.
    timeout: seconds to wait for the server before giving up.
    force: convert again even when the checkpoint exists.

  Returns the checkpoint path, `jaxviz.cache.default_weights_path(model, top=top)`, which
  `jaxviz.load_model(model)` reads by default.
  """
  if source is None:
    if (model, top) not in KERAS_WEIGHTS:
      known = sorted({m for m, _ in KERAS_WEIGHTS})
      raise JaxvizError(f"no published Keras weights for model {model!r}; models with "
                        f"weights to fetch: {', '.join(known)}")
    source = KERAS_WEIGHTS[(model, top)]
  out = default_weights_path(model, top=top)
  if out.exists() and not force:
    return out
  keras_file = keras_cache_dir() / source.filename
  if keras_file.exists():
    verify_md5(keras_file, source.md5)
  else:
    download(source.url, keras_file, source.md5, timeout=timeout)
  from jaxviz.convert import keras
  return keras.convert(keras_file, out, model,
                       metadata={"url": source.url, "md5": source.md5})


def download(url: str, dest: Path, md5: str, timeout: float = 10.0) -> Path:
  """Downloads `url` to `dest`, checking its MD5 hash on the way.

  The bytes go to a temporary file beside `dest` that is renamed only once complete and
  verified, so an interrupted or corrupt download never leaves a file at `dest`.
  """
  dest = Path(dest)
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
  try:
    with os.fdopen(fd, "wb") as f:
      try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
          shutil.copyfileobj(response, f, 1 << 20)
      except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise JaxvizError(
            f"could not download {url} ({reason}). This machine may be offline. Download that "
            f"file elsewhere, place it at {dest}, and run this again: it is checked against "
            f"its MD5 hash {md5} and converted. Or convert any Keras file yourself with "
            "`jaxviz convert IN OUT`.") from None
    verify_md5(Path(tmp), md5, origin=url)
    os.replace(tmp, dest)
  finally:
    Path(tmp).unlink(missing_ok=True)
  return dest


def verify_md5(path: Path, md5: str, origin: str | None = None) -> None:
  """Raises `JaxvizError` unless the file's MD5 hash is `md5`."""
  digest = file_md5(path)
  if digest != md5.lower():
    where = f"downloaded from {origin}" if origin else f"at {path}"
    raise JaxvizError(f"the file {where} has MD5 hash {digest}, not the published {md5}: it is "
                      f"truncated, damaged or another file. Delete it and fetch it again.")


def file_md5(path: Path) -> str:
  digest = hashlib.md5(usedforsecurity=False)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()
