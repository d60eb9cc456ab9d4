"""Feature maps: one forward pass through segments equals model.features for every layer, in
shape, channel order and values; and the Sequential `start` argument it relies on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.errors import JaxvizError
from jaxviz.models import Model, get_spec
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec
from jaxviz.views import feature_maps as fm


@pytest.fixture(scope="module")
def lenet():
  spec = get_spec("lenet")
  return Model(spec, spec.init_params(jax.random.key(0)))


@pytest.fixture(scope="module")
def images():
  return np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)


def test_block_layers():
  assert fm.block_layers(get_spec("lenet")) == ["conv2d_1", "conv2d_2"]
  assert fm.block_layers(get_spec("vgg16")) == [
      "block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"]


def test_default_layers_equal_model_features(lenet, images):
  maps = fm.feature_maps(lenet, images)
  assert list(maps) == ["conv2d_1", "conv2d_2"]
  assert maps["conv2d_1"].shape == (3, 28, 28, 20)
  assert maps["conv2d_2"].shape == (3, 14, 14, 50)
  for layer, values in maps.items():
    np.testing.assert_allclose(values, lenet.features(images, layer), rtol=1e-5, atol=1e-5)


def test_any_layers_in_model_order_from_one_pass(lenet, images):
  maps = fm.feature_maps(lenet, images, "max_pooling2d_2, activation_1,conv2d_2")
  assert list(maps) == ["activation_1", "conv2d_2", "max_pooling2d_2"]
  assert maps["max_pooling2d_2"].shape == (3, 7, 7, 50)
  for layer, values in maps.items():
    np.testing.assert_allclose(values, lenet.features(images, layer), rtol=1e-5, atol=1e-5)


def scaling_model():
  """1×1 conv with 3 channels: channel c is (c + 1) · pixel. Keeps the channel order visible."""
  spec = ModelSpec(name="scale", layers=(L.Conv("conv", 3, (1, 1)), L.MaxPool("pool")),
                   input_shape=(4, 4, 1), fixed_input_size=False, num_classes=0,
                   preprocess=lambda p: np.asarray(p, np.float32), to_display=lambda x: x)
  params = {"conv": {"kernel": jnp.arange(1.0, 4.0).reshape(1, 1, 1, 3), "bias": jnp.zeros(3)}}
  return Model(spec, params)


def test_channel_order_and_values_by_hand():
  model = scaling_model()
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  maps = fm.feature_maps(model, x)
  assert list(maps) == ["conv"]
  for c in range(3):
    np.testing.assert_allclose(maps["conv"][0, ..., c], (c + 1) * x[0, ..., 0])


def test_grid_tiles_follow_channel_order():
  maps = np.zeros((4, 4, 3), np.float32)
  for c in range(3):
    maps[c, c, c] = 1.0  # channel c lights pixel (c, c)
  tiles = fm.channel_tiles(maps)
  assert tiles.shape == (3, 4, 4, 1) and tiles.dtype == np.uint8
  for c in range(3):
    assert np.unravel_index(np.argmax(tiles[c, ..., 0]), (4, 4)) == (c, c)
  grid = fm.feature_map_grid(maps)
  assert grid.shape[-1] == 1 and grid.shape[0] >= 56
  assert fm.channel_tiles(np.zeros((4, 4, 100)), max_channels=64).shape[0] == 64


def test_layers_without_maps_and_unknown_layers_are_refused(lenet, images):
  with pytest.raises(JaxvizError, match="not maps"):
    fm.feature_maps(lenet, images, "dense_1")
  with pytest.raises(JaxvizError, match="unknown layer .*conv2d_2"):
    fm.feature_maps(lenet, images, "conv2d_3")


def test_sequential_start_continues_from_a_layer_input(lenet, images):
  module, params = lenet.spec.module, {"params": lenet.params}
  middle = module.apply(params, images, upto="max_pooling2d_1")
  rest = module.apply(params, middle, start="conv2d_2", upto="dense_2")
  np.testing.assert_allclose(rest, module.apply(params, images, upto="dense_2"), rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(KeyError):
    module.apply(params, images, start="nope")
