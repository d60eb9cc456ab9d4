"""Shared fixtures: tiny MNIST files in IDX format, written by the tests themselves; random LeNet
checkpoints; a cache folder of the test's own."""

import gzip
import struct

import jax
import numpy as np
import pytest

# The backend starts here, with one CPU device, so no command a test runs in this process can
# split the host into one device per core (`jaxviz.host_devices`): tests that need several
# devices start processes of their own.
jax.devices()


def idx_bytes(array: np.ndarray) -> bytes:
  """An IDX file of uint8 `array`: magic `00 00 08 <ndim>`, big-endian dims, then the bytes."""
  array = np.asarray(array, np.uint8)
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(folder, n_train: int = 12, n_test: int = 5,
                compress: bool = True) -> dict[str, np.ndarray]:
  """Writes the four MNIST files into `folder` and returns their arrays.

  Image i of a split is filled with 10 * i (mod 256) and labelled i % 10, so every record can
  be told apart after TFDS reorders them.
  """
  from jaxviz.data import MNIST_FILES
  arrays = {}
  for split, n in (("train", n_train), ("test", n_test)):
    arrays[f"{split}_images"] = np.repeat((10 * np.arange(n)) % 256, 28 * 28).reshape(n, 28, 28)
    arrays[f"{split}_labels"] = np.arange(n) % 10
  folder.mkdir(parents=True, exist_ok=True)
  for key, name in MNIST_FILES.items():
    raw = idx_bytes(arrays[key])
    if compress:
      (folder / name).write_bytes(gzip.compress(raw))
    else:
      (folder / name.removesuffix(".gz")).write_bytes(raw)
  return arrays


def lenet_checkpoint(folder, seed: int) -> str:
  """Random LeNet weights (Flax's initializers, key `seed`) saved as a jaxviz checkpoint in
  `folder`; returns its path."""
  import jax

  from jaxviz import checkpoint
  from jaxviz.models import get_spec
  spec = get_spec("lenet")
  return str(checkpoint.save(folder / "lenet-random.msgpack", "lenet",
                             spec.init_params(jax.random.key(seed)), {"note": "test"}))


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
  """`JAXVIZ_CACHE` in the test's own folder: no test reads or writes the user's weights."""
  monkeypatch.setenv("JAXVIZ_CACHE", str(tmp_path / "cache"))


@pytest.fixture(name="lenet_checkpoint", scope="session")
def lenet_checkpoint_fixture():
  return lenet_checkpoint


@pytest.fixture(name="idx_bytes")
def idx_bytes_fixture():
  return idx_bytes


@pytest.fixture(name="write_mnist")
def write_mnist_fixture():
  return write_mnist
