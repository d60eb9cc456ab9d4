"""VGG16's structure, input sizes, pre- and de-processing, variants and shipped configs.

The numerics against Keras itself are in test_convert.py.
"""

import os

import jax
import numpy as np
import pytest

import jaxviz
from jaxviz import checkpoint
from jaxviz.config import load_config
from jaxviz.errors import JaxvizError
from jaxviz.models import spec_for_layers
from jaxviz.models import Model, get_spec
from jaxviz.models import layers as L
from jaxviz.models.vgg16 import VGG16, VGG16_TOP, preprocess, to_display, variant

CONFIGS = ("vgg16_block1_conv2", "vgg16_block3_conv1", "vgg16_block5_conv1",
           "vgg16_block5_conv3")


def he_normal_params(spec, seed=0):
  """Random parameters drawn with numpy (Flax's jitted init of 15M parameters is much slower)."""
  rng = np.random.default_rng(seed)
  params = {}
  for layer, shapes in spec.param_shapes().items():
    kernel = shapes["kernel"]
    params[layer] = {
        "kernel": rng.standard_normal(kernel, np.float32) * np.sqrt(2 / np.prod(kernel[:-1])),
        "bias": rng.standard_normal(shapes["bias"], np.float32) * 0.1}
  return params


@pytest.fixture(scope="module")
def model():
  return Model(VGG16, he_normal_params(VGG16))


def test_registered_and_named_like_keras():
  assert get_spec("vgg16") is VGG16
  convs = [f"block{b}_conv{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
           for i in range(1, n + 1)]
  assert VGG16.conv_layer_names == convs
  assert [n for n in VGG16.layer_names if n.endswith("pool")] == [
      f"block{b}_pool" for b in range(1, 6)]
  assert VGG16_TOP.layer_names == VGG16.layer_names + ["flatten", "fc1", "fc2", "predictions"]
  assert all(VGG16.layer(n).activation == "relu" for n in convs)
  assert VGG16_TOP.layer("predictions").activation == "softmax"
  assert VGG16_TOP.logits_layer == "predictions" and VGG16_TOP.num_classes == 1000
  assert VGG16.num_classes == 0 and VGG16.logits_layer is None


def test_parameter_counts_and_shapes_are_keras_ones():
  """The totals Keras' VGG16 `summary()` prints: 14,714,688 without the top, 138,357,544 with."""
  count = lambda shapes: sum(int(np.prod(s)) for layer in shapes.values()  # noqa: E731
                             for s in layer.values())
  assert count(VGG16.param_shapes()) == 14_714_688
  shapes = VGG16_TOP.param_shapes()
  assert count(shapes) == 138_357_544
  assert shapes["block1_conv1"] == {"kernel": (3, 3, 3, 64), "bias": (64,)}
  assert shapes["fc1"]["kernel"] == (7 * 7 * 512, 4096)
  assert shapes["predictions"] == {"kernel": (4096, 1000), "bias": (1000,)}


@pytest.mark.parametrize("size", [32, 48, 80])
def test_any_input_size_without_the_top(model, size):
  x = np.zeros((1, size, size, 3), np.float32)
  assert model.features(x, "block1_conv2").shape == (1, size, size, 64)
  assert model.features(x, "block5_pool").shape == (1, size // 32, size // 32, 512)


@pytest.mark.parametrize("spec,size", [(VGG16, 40), (VGG16_TOP, None), (get_spec("lenet"), None)])
def test_output_shapes_are_those_of_the_forward_pass(spec, size):
  """`output_shape` (one trace for every layer) against the model run up to each layer."""
  x = np.zeros((1, *spec.input_shape_for(size)), np.float32)
  params = jax.eval_shape(spec.module.init, jax.random.key(0), x)
  for name in spec.layer_names:
    for output in ("activation", "pre_activation", "input"):
      out = jax.eval_shape(lambda p, x: spec.module.apply(p, x, upto=name, output=output),
                           params, x)
      assert spec.output_shape(name, size, output) == out.shape[1:], (name, output)
  with pytest.raises(JaxvizError, match="no_such_layer"):
    spec.output_shape("no_such_layer", size)


def test_top_takes_224_only():
  assert VGG16_TOP.input_shape_for(None) == (224, 224, 3)
  with pytest.raises(JaxvizError, match="224×224 inputs only"):
    VGG16_TOP.input_shape_for(128)
  assert VGG16.input_shape_for(128) == (128, 128, 3)


def test_conv_outputs_are_after_relu(model):
  x = preprocess(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)))
  after = np.asarray(model.features(x, "block2_conv1"))
  before = np.asarray(model.features(x, "block2_conv1", output="pre_activation"))
  assert (before < 0).any() and (after >= 0).all()
  np.testing.assert_array_equal(after, np.maximum(before, 0))


@pytest.mark.parametrize("shape,dtype", [((2, 5, 7, 3), np.float32), ((5, 7, 3), np.uint8),
                                         ((4, 4, 3), np.float64)])
def test_preprocess_equals_keras_preprocess_input(shape, dtype):
  os.environ["KERAS_BACKEND"] = "jax"
  keras = pytest.importorskip("keras")
  pixels = np.random.default_rng(1).uniform(0, 255, shape).astype(dtype)
  kept = pixels.copy()
  ours = preprocess(pixels)
  want = keras.applications.vgg16.preprocess_input(pixels.copy())
  np.testing.assert_array_equal(pixels, kept)  # the input is left alone
  assert ours.dtype == np.float32
  np.testing.assert_allclose(ours, want, rtol=0, atol=1e-4)


def test_to_display_gives_back_rgb_pixels():
  pixels = np.random.default_rng(2).uniform(0, 255, (3, 6, 6, 3)).astype(np.float32)
  np.testing.assert_allclose(to_display(preprocess(pixels)), pixels, atol=1e-4)
  red = np.zeros((1, 1, 3), np.float32)
  red[..., 0] = 255
  x = preprocess(red)
  assert x[0, 0, 2] == pytest.approx(255 - 123.68)  # red is the last channel of the input
  np.testing.assert_allclose(to_display(x), red, atol=1e-4)


def test_variant_follows_the_layers_a_file_holds():
  assert variant(VGG16.param_shapes()) is VGG16
  assert variant(VGG16_TOP.param_shapes()) is VGG16_TOP
  assert variant(["block1_conv1", "predictions"]) is VGG16_TOP
  assert spec_for_layers(VGG16, ["fc1"]) is VGG16_TOP
  lenet = get_spec("lenet")
  assert spec_for_layers(lenet, ["fc1"]) is lenet


def test_load_model_from_a_checkpoint(model, tmp_path):
  path = checkpoint.save(tmp_path / "vgg16.msgpack", "vgg16", model.params, {"note": "test"})
  loaded = jaxviz.load_model("vgg16", path)
  assert loaded.spec is VGG16 and loaded.layers == VGG16.layer_names
  x = preprocess(np.random.default_rng(3).uniform(0, 255, (1, 32, 32, 3)))
  np.testing.assert_array_equal(loaded.features(x, "block3_conv1"),
                                model.features(x, "block3_conv1"))
  with pytest.raises(JaxvizError, match="holds weights of model 'vgg16'"):
    jaxviz.load_model("lenet", path)


def test_default_weights_missing_names_the_fix(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVIZ_CACHE", str(tmp_path))
  with pytest.raises(JaxvizError, match="jaxviz fetch-weights vgg16"):
    jaxviz.load_model("vgg16")


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_load(name):
  config = load_config(name)
  assert config.model == "vgg16" and config.size == 128 and config.preset == "default"
  assert config.filters == "all" and config.parameterization == "fourier"
  spec = get_spec(config.model)
  assert isinstance(spec.layer(config.layer), L.Conv)
  assert spec.input_shape_for(config.size) == (128, 128, 3)
  assert config.layer in name
