"""Filter-weight pictures: the seed's 0–1 normalization over the layer, colour tiles in display
channel order, per-channel grids, and clear errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.errors import JaxvizError
from jaxviz.models import Model
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec
from jaxviz.views import weights as wt


def colour_model(to_display=lambda x: x[..., ::-1] + 100.0):
  """RGB input whose model order is BGR (as VGG16's); conv1 3×3×3×4, conv2 3×3×4×2."""
  spec = ModelSpec(name="colour", layers=(L.Conv("conv1", 4, activation="relu"),
                                          L.Conv("conv2", 2), L.Flatten("flat")),
                   input_shape=(6, 6, 3), fixed_input_size=True, num_classes=0,
                   preprocess=lambda p: np.asarray(p, np.float32)[..., ::-1],
                   to_display=to_display)
  k1 = np.linspace(-1, 2, 3 * 3 * 3 * 4, dtype=np.float32).reshape(3, 3, 3, 4)
  k2 = np.linspace(-3, 1, 3 * 3 * 4 * 2, dtype=np.float32).reshape(3, 3, 4, 2)
  params = {"conv1": {"kernel": jnp.asarray(k1), "bias": jnp.zeros(4)},
            "conv2": {"kernel": jnp.asarray(k2), "bias": jnp.zeros(2)}}
  return Model(spec, params)


def test_normalized_over_the_whole_layer():
  model = colour_model()
  view = wt.filter_weights(model, None, "1,3")
  assert view.layer == "conv1" and view.filters.tolist() == [1, 3]
  assert view.kernel.shape == (3, 3, 3, 2)
  assert (view.low, view.high) == (-1.0, 2.0)
  scaled = view.normalized()
  assert scaled.shape == (2, 3, 3, 3)
  full = (np.asarray(model.params["conv1"]["kernel"]) + 1.0) / 3.0
  np.testing.assert_allclose(scaled, np.transpose(full[..., [1, 3]], (3, 0, 1, 2)), atol=1e-6)


def test_colour_tiles_are_in_display_order():
  model = colour_model()
  view = wt.filter_weights(model, "conv1")
  tiles = wt.filter_tiles(model.spec, view)
  assert tiles.shape == (4, 3, 3, 3) and tiles.dtype == np.uint8
  expected = np.round(view.normalized()[..., ::-1] * 255)  # BGR weights → RGB tiles
  np.testing.assert_allclose(tiles, expected, atol=1)
  assert tiles.min() == 0 and tiles.max() == 255  # layer min and max reach black and white


def test_grey_tiles_divide_out_the_display_scale():
  """LeNet's inputs are in [0, 1] and display as 0–255: the tiles still span the layer's range
  rather than saturating."""
  from jaxviz import get_spec
  from jaxviz.models import lenet
  spec = get_spec("lenet")
  kernel = np.linspace(-1, 1, 5 * 5 * 20, dtype=np.float32).reshape(5, 5, 1, 20)
  model = Model(spec, {"conv2d_1": {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(20)}})
  view = wt.filter_weights(model, "conv2d_1")
  tiles = wt.filter_tiles(spec, view)
  assert lenet.to_display(np.ones(1))[0] == 255.0
  np.testing.assert_allclose(tiles, np.round(view.normalized() * 255), atol=1)
  assert tiles.min() == 0 and tiles.max() == 255


def test_deeper_layers_are_shown_per_channel():
  model = colour_model()
  view = wt.filter_weights(model, "conv2")
  with pytest.raises(JaxvizError, match="per channel"):
    wt.filter_tiles(model.spec, view)
  grid = wt.channel_grids(view)
  assert grid.dtype == np.uint8 and grid.shape[-1] == 1
  # 2 filters side by side, each a 2×2 grid of 4 channel tiles of 3×3 enlarged to 12 px
  assert grid.shape[:2] == (2 * 12 + 1, 2 * (2 * 12 + 1) + 6)


def test_bad_requests_fail_clearly():
  model = colour_model()
  with pytest.raises(JaxvizError, match="not a conv layer"):
    wt.filter_weights(model, "flat")
  with pytest.raises(JaxvizError, match="out of range"):
    wt.filter_weights(model, "conv1", "4")
  with pytest.raises(JaxvizError, match="unknown layer"):
    wt.filter_weights(model, "conv3")


def test_pictures():
  model = colour_model()
  picture = wt.filters_picture(model.spec, wt.filter_weights(model), labels=True)
  assert picture.shape == (2 * 42 + 2, 2 * 42 + 2, 3)  # 4 tiles of 3×3 enlarged ×14 (≥ 40 px)
