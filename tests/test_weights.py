"""Fetching the Keras ImageNet weights: download, MD5 check, conversion, and offline failure.

No network is needed: downloads come from `file://` URLs of files the tests write, and the
offline case points at a closed port on 127.0.0.1.
"""

import importlib.util
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import jaxviz
from jaxviz import cli, weights
from jaxviz.errors import JaxvizError
from jaxviz.cache import default_weights_path
from jaxviz.models.vgg16 import VGG16
from keras_layouts import spec_layers, write_keras2_weights


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVIZ_CACHE", str(tmp_path / "cache"))
  return tmp_path / "cache"


@pytest.fixture(scope="module")
def notop_file(tmp_path_factory):
  """A VGG16 base in the layout of vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5."""
  rng = np.random.default_rng(0)
  params = {layer: {var: rng.standard_normal(shape, np.float32) * 0.01
                    for var, shape in shapes.items()}
            for layer, shapes in VGG16.param_shapes().items()}
  path = tmp_path_factory.mktemp("published") / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
  write_keras2_weights(path, spec_layers(VGG16, params))
  return path, params, weights.file_md5(path)


def closed_port_url() -> str:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  return f"http://127.0.0.1:{port}/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def leftovers(folder: Path) -> list[str]:
  return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_published_addresses_and_hashes_are_keras_ones():
  spec = importlib.util.find_spec("keras")
  if spec is None:
    pytest.skip("keras is not installed")
  source = (Path(spec.origin).parent / "src" / "applications" / "vgg16.py").read_text()
  for (model, _), published in weights.KERAS_WEIGHTS.items():
    assert published.md5 in source
    assert published.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
    assert published.filename in source


def test_download_verify_convert_and_load(notop_file, cache):
  path, params, md5 = notop_file
  source = weights.KerasWeights(path.as_uri(), md5)
  out = weights.fetch("vgg16", source=source)
  assert out == default_weights_path("vgg16") and out.is_file()
  assert (weights.keras_cache_dir() / path.name).is_file()
  model = jaxviz.load_model("vgg16")  # the default weights
  assert model.spec is VGG16 and model.metadata["md5"] == md5
  np.testing.assert_array_equal(model.params["block4_conv2"]["kernel"],
                                params["block4_conv2"]["kernel"])
  # Cached: a second fetch neither downloads nor converts.
  gone = weights.KerasWeights(path.with_name("moved.h5").as_uri(), md5)
  assert weights.fetch("vgg16", source=gone) == out


def test_offline_fails_at_once_naming_the_address_and_the_manual_step(cache):
  url = closed_port_url()
  start = time.monotonic()
  with pytest.raises(JaxvizError) as e:
    weights.fetch("vgg16", source=weights.KerasWeights(url, "0" * 32))
  assert time.monotonic() - start < 5
  message = str(e.value)
  assert url in message and "offline" in message
  assert str(weights.keras_cache_dir() / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5") \
      in message
  assert leftovers(cache) == ["keras"]  # the folder it asks you to fill, and nothing in it


def test_fetch_weights_command_offline(monkeypatch, capsys, cache):
  url = closed_port_url()
  monkeypatch.setitem(weights.KERAS_WEIGHTS, ("vgg16", False),
                      weights.KerasWeights(url, "0" * 32))
  assert cli.main(["fetch-weights", "vgg16"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("jaxviz fetch-weights: error: could not download") and url in err
  assert not default_weights_path("vgg16").exists()


def test_a_file_placed_by_hand_is_checked_against_its_hash(notop_file, cache):
  path, _, md5 = notop_file
  placed = weights.keras_cache_dir() / path.name
  placed.parent.mkdir(parents=True)
  placed.write_bytes(path.read_bytes()[:-10])  # a truncated copy
  source = weights.KerasWeights("http://127.0.0.1:9/" + path.name, md5)
  with pytest.raises(JaxvizError, match=f"not the published {md5}"):
    weights.fetch("vgg16", source=source)
  assert not default_weights_path("vgg16").exists()
  placed.write_bytes(path.read_bytes())  # the right file: verified and converted, no download
  assert weights.fetch("vgg16", source=source).is_file()


def test_a_download_with_the_wrong_hash_leaves_nothing(notop_file, cache):
  path, _, _ = notop_file
  with pytest.raises(JaxvizError, match="MD5 hash"):
    weights.download(path.as_uri(), cache / "x.h5", "0" * 32)
  assert leftovers(cache) == []


def test_models_without_published_weights():
  with pytest.raises(JaxvizError, match="vgg16"):
    weights.fetch("lenet")
