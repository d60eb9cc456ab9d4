"""Datasets: the offline digits, IDX parsing, and MNIST through TFDS on tiny generated files."""

import functools
import gzip
import http.server
import threading
import time

import numpy as np
import pytest

from jaxviz import data
from jaxviz.errors import JaxvizError


def check_split(images, labels, arrays, split):
  n = len(arrays[f"{split}_labels"])
  assert images.shape == (n, 28, 28, 1) and images.dtype == np.float32
  assert labels.shape == (n,) and labels.dtype == np.int32
  found = sorted(zip(np.round(images[:, 0, 0, 0] * 255).astype(int).tolist(), labels.tolist()))
  expected = sorted(zip(arrays[f"{split}_images"][:, 0, 0].tolist(),
                        arrays[f"{split}_labels"].tolist()))
  assert found == expected
  assert np.all(images == images[:, :1, :1, :])


# ---- digits ------------------------------------------------------------------------------------

def test_digits_shapes_range_and_background():
  for split in data.SPLITS:
    images, labels = data.load_dataset("digits", split)
    assert images.shape[1:] == (28, 28, 1) and images.dtype == np.float32
    assert labels.shape == images.shape[:1] and labels.dtype == np.int32
    assert images.min() == 0.0 and 0.9 < images.max() <= 1.0
    assert set(labels.tolist()) == set(range(10))
    frame = np.ones((28, 28), bool)
    frame[4:24, 4:24] = False
    assert np.all(images[:, frame] == 0), "digits must sit in the central 20×20 box"


def test_digits_split_is_stratified_disjoint_and_fixed():
  train_x, train_y = data.load_dataset("digits", "train")
  test_x, test_y = data.load_dataset("digits", "test")
  assert len(train_y) + len(test_y) == 1797
  assert abs(len(test_y) / 1797 - data.DIGITS_TEST_FRACTION) < 0.01
  test_counts, train_counts = np.bincount(test_y, minlength=10), np.bincount(train_y, minlength=10)
  assert np.all(np.abs(test_counts / (test_counts + train_counts) - 0.2) < 0.02)
  train_rows = {x.tobytes() for x in train_x}
  assert sum(x.tobytes() in train_rows for x in test_x) <= 2  # the UCI set holds a few twins

  labels = data._digits_all()[1]
  mask = data.digits_test_mask(labels)
  np.testing.assert_array_equal(mask, data.digits_test_mask(labels))
  assert not np.array_equal(mask, data.digits_test_mask(labels, seed=1))
  again_x, again_y = data.load_digits("test")
  np.testing.assert_array_equal(again_x, test_x)
  np.testing.assert_array_equal(again_y, test_y)


def test_mnist_like_centres_a_box():
  out = data.mnist_like(np.full((8, 8), 255.0))
  assert out.shape == (28, 28, 1)
  np.testing.assert_allclose(out[4:24, 4:24, 0], 1.0, atol=1e-5)
  assert out.sum() == pytest.approx(400.0, rel=1e-4)


def test_unknown_dataset_and_split():
  with pytest.raises(JaxvizError, match="Did you mean 'mnist'.*Valid: digits, mnist"):
    data.load_dataset("mnsit", "train")
  with pytest.raises(JaxvizError, match="Valid: train, test"):
    data.load_dataset("digits", "validation")


# ---- IDX ---------------------------------------------------------------------------------------

def test_read_idx_gzip_and_raw(tmp_path, idx_bytes):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
  (tmp_path / "a").write_bytes(idx_bytes(array))
  np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), array)
  np.testing.assert_array_equal(data.read_idx(tmp_path / "a"), array)


def test_read_idx_rejects_bad_files(tmp_path, idx_bytes):
  (tmp_path / "bad").write_bytes(b"PK\x03\x04 not idx")
  with pytest.raises(JaxvizError, match="not an IDX file"):
    data.read_idx(tmp_path / "bad")
  (tmp_path / "short").write_bytes(idx_bytes(np.zeros((3, 28, 28)))[:-5])
  with pytest.raises(JaxvizError, match="truncated"):
    data.read_idx(tmp_path / "short")


# ---- MNIST through TFDS ------------------------------------------------------------------------

def test_mnist_from_manual_dir(tmp_path, write_mnist):
  arrays = write_mnist(tmp_path / "downloads" / "manual")
  for split in data.SPLITS:
    check_split(*data.load_dataset("mnist", split, data_dir=tmp_path), arrays, split)
  prepared = tmp_path / data.MNIST_BUILDER / "1.0.0"
  assert sorted(p.name for p in prepared.glob("*.array_record*")) == [
      "jaxviz_mnist-test.array_record-00000-of-00001",
      "jaxviz_mnist-train.array_record-00000-of-00001"]
  for f in (tmp_path / "downloads" / "manual").iterdir():
    f.unlink()
  check_split(*data.load_dataset("mnist", "test", data_dir=str(tmp_path)), arrays, "test")


def test_mnist_from_unpacked_manual_files(tmp_path, write_mnist):
  arrays = write_mnist(tmp_path / "downloads" / "manual", 3, 2, compress=False)
  check_split(*data.load_dataset("mnist", "train", data_dir=tmp_path), arrays, "train")


@pytest.fixture
def http_folder(tmp_path, monkeypatch):
  """Serves `tmp_path/"site"` on localhost and points `MNIST_URL` at it."""
  site = tmp_path / "site"
  site.mkdir()
  for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)
  handler = functools.partial(QuietHandler, directory=str(site))
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  monkeypatch.setattr(data, "MNIST_URL", f"http://127.0.0.1:{server.server_address[1]}/")
  yield site
  server.shutdown()
  server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


def test_mnist_download_with_tfds_download_manager(tmp_path, http_folder, write_mnist):
  arrays = write_mnist(http_folder, 7, 3)
  data_dir = tmp_path / "tfds"
  for split in data.SPLITS:
    check_split(*data.load_dataset("mnist", split, data_dir=data_dir), arrays, split)
  assert len(list((data_dir / "downloads").rglob("*idx3-ubyte*.gz"))) == 2


def test_mnist_failed_download_names_the_manual_dir(tmp_path, http_folder):
  with pytest.raises(JaxvizError, match="could not prepare MNIST") as info:
    data.load_dataset("mnist", "train", data_dir=tmp_path / "tfds")
  assert str(tmp_path / "tfds" / "downloads" / "manual") in str(info.value)


def test_mnist_offline_fails_at_once_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setattr(data, "_reachable", lambda url: False)
  start = time.perf_counter()
  with pytest.raises(JaxvizError) as info:
    data.load_dataset("mnist", "train", data_dir=tmp_path)
  assert time.perf_counter() - start < 5
  message = str(info.value)
  for name in data.MNIST_FILES.values():
    assert data.MNIST_URL + name in message
  assert str(tmp_path / "downloads" / "manual") in message
  assert not (tmp_path / data.MNIST_BUILDER / "1.0.0").exists()


def test_mnist_mismatched_files(tmp_path, write_mnist, idx_bytes):
  manual = tmp_path / "downloads" / "manual"
  write_mnist(manual, 4, 2)
  (manual / data.MNIST_FILES["train_labels"]).write_bytes(gzip.compress(idx_bytes(np.arange(3))))
  with pytest.raises(JaxvizError, match="do not match"):
    data.load_dataset("mnist", "train", data_dir=tmp_path)
