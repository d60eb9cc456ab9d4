"""Grad-CAM on a network built so that the evidence for each class sits in a known place, and
against a direct computation of its formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.errors import JaxvizError
from jaxviz.models import Model, get_spec
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec
from jaxviz.views import gradcam as gc

SIDE = 8


def evidence_model() -> Model:
  """Two input channels; class 0 counts channel 0 anywhere, class 1 counts channel 1.

  conv (1×1, identity, ReLU) → max pool 2 → flatten → dense logits. So the evidence for class c
  is wherever channel c is bright, and nothing else.
  """
  spec = ModelSpec(
      name="evidence",
      layers=(L.Conv("conv", 2, (1, 1), activation="relu"), L.MaxPool("pool"),
              L.Flatten("flatten"), L.Dense("logits", 2), L.Activation("softmax", "softmax")),
      input_shape=(SIDE, SIDE, 2), fixed_input_size=True, num_classes=2,
      preprocess=lambda p: np.asarray(p, np.float32) / 255.0, to_display=lambda x: x,
      logits_layer="logits")
  cells = (SIDE // 2) ** 2
  dense = np.zeros((cells, 2, 2), np.float32)
  dense[:, 0, 0] = dense[:, 1, 1] = 1.0       # flatten order: (cell, channel) → class
  params = {"conv": {"kernel": jnp.eye(2).reshape(1, 1, 2, 2), "bias": jnp.zeros(2)},
            "logits": {"kernel": jnp.asarray(dense.reshape(cells * 2, 2)), "bias": jnp.zeros(2)}}
  return Model(spec, params)


def blob_image(rng, red_at, green_at, red=1.0, green=0.6):
  x = rng.uniform(0, 0.05, (SIDE, SIDE, 2)).astype(np.float32)
  (r0, c0), (r1, c1) = red_at, green_at
  x[r0:r0 + 2, c0:c0 + 2, 0] = red
  x[r1:r1 + 2, c1:c1 + 2, 1] = green
  return x


def peak(heat):
  return np.unravel_index(np.argmax(heat), heat.shape)


@pytest.mark.parametrize("red_at, green_at", [((0, 0), (6, 6)), ((4, 2), (0, 6)),
                                              ((6, 0), (2, 4))])
def test_heatmap_peaks_where_the_evidence_is(red_at, green_at):
  model = evidence_model()
  x = blob_image(np.random.default_rng(0), red_at, green_at)[None]
  result = gc.gradcam(model, x, top_k=2)
  assert result.layer == "conv"  # the pool before the classifier is skipped
  assert result.classes[0].tolist() == [0, 1]  # red is brighter: class 0 first
  for k, (r, c) in enumerate([red_at, green_at]):
    heat = result.heatmaps[0, k]
    assert heat.shape == (SIDE, SIDE) and heat.max() == pytest.approx(1.0)
    pr, pc = peak(heat)
    assert r <= pr < r + 2 and c <= pc < c + 2
    inside = heat[r:r + 2, c:c + 2].mean()
    outside = (heat.sum() - heat[r:r + 2, c:c + 2].sum()) / (SIDE * SIDE - 4)
    assert inside > 5 * outside


def test_given_classes_and_many_images_in_one_call():
  model = evidence_model()
  rng = np.random.default_rng(1)
  spots = [((0, 0), (6, 6)), ((6, 6), (0, 0)), ((2, 4), (4, 0))] * 3
  x = np.stack([blob_image(rng, a, b) for a, b in spots])
  result = gc.gradcam(model, x, classes="1,0", batch_size=4)  # 9 images in chunks of 4
  assert result.heatmaps.shape == (9, 2, SIDE, SIDE)
  assert (result.classes == [1, 0]).all()
  for i, (red_at, green_at) in enumerate(spots):
    for k, (r, c) in zip((0, 1), (green_at, red_at)):
      pr, pc = peak(result.heatmaps[i, k])
      assert r <= pr < r + 2 and c <= pc < c + 2


def small_cnn() -> Model:
  """A random two-block CNN: 12×12×2 → conv 4 → pool → conv 6 → ReLU → pool → dense 3."""
  spec = ModelSpec(
      name="small",
      layers=(L.Conv("c1", 4, (3, 3), activation="relu"), L.MaxPool("p1"),
              L.Conv("c2", 6, (3, 3)), L.Activation("a2", "relu"), L.MaxPool("p2"),
              L.Flatten("flatten"), L.Dense("logits", 3), L.Activation("softmax", "softmax")),
      input_shape=(12, 12, 2), fixed_input_size=True, num_classes=3,
      preprocess=lambda p: np.asarray(p, np.float32) / 255.0, to_display=lambda x: x,
      logits_layer="logits")
  return Model(spec, spec.init_params(jax.random.key(3)))


def test_one_compiled_program_for_any_number_of_images():
  model = evidence_model()
  rng = np.random.default_rng(4)
  before = gc._gradcam_batch._cache_size()
  for n in (5, 8, 6):  # chunks of 4, the last padded: the same program every time
    x = np.stack([blob_image(rng, (0, 0), (6, 6)) for _ in range(n)])
    assert gc.gradcam(model, x, classes="0", batch_size=4).heatmaps.shape == (n, 1, SIDE, SIDE)
  assert gc._gradcam_batch._cache_size() == before + 1


def direct_gradcam(model, image, layer, klass, weighting):
  """The formula, one class at a time, with jax.grad through the rest of the model."""
  module, params = model.spec.module, {"params": model.params}
  acts = module.apply(params, image[None], upto=layer)[0]
  after = model.spec.layer_names[model.spec.layer_names.index(layer) + 1]

  def logit(a):
    return module.apply(params, a[None], start=after, upto=model.spec.logits_layer)[0, klass]

  grads = jax.grad(logit)(acts)
  weights = gc.channel_weights(weighting, acts, grads[None])[0]
  cam = jnp.maximum(jnp.einsum("hwc,c->hw", acts, weights), 0)
  return jax.image.resize(cam, image.shape[:2], "bilinear")


@pytest.mark.parametrize("weighting", gc.WEIGHTINGS)
def test_batched_result_equals_the_formula_per_image_and_class(weighting):
  model = small_cnn()
  x = np.random.default_rng(2).uniform(0, 1, (3, 12, 12, 2)).astype(np.float32)
  result = gc.gradcam(model, x, classes=[2, 0], weighting=weighting, batch_size=2)
  assert result.layer == "a2"
  direct = jax.jit(direct_gradcam, static_argnums=(0, 2, 4))
  for i in range(3):
    for j, k in enumerate([2, 0]):
      cam = np.asarray(direct(model, x[i], "a2", k, weighting))
      expected = cam / cam.max() if cam.max() > 0 else cam
      np.testing.assert_allclose(result.heatmaps[i, j], expected, atol=2e-5)


def test_bad_requests_fail_clearly():
  model = evidence_model()
  x = np.zeros((1, SIDE, SIDE, 2), np.float32)
  with pytest.raises(JaxvizError, match="class index 5 is out of range"):
    gc.gradcam(model, x, classes="0,5")
  with pytest.raises(JaxvizError, match="unknown layer .*'conv'"):
    gc.gradcam(model, x, layer="conv_1")
  with pytest.raises(JaxvizError, match="layer with maps"):
    gc.gradcam(model, x, layer="flatten")
  with pytest.raises(JaxvizError, match="top_k"):
    gc.gradcam(model, x, top_k=3)
  with pytest.raises(JaxvizError, match="unknown Grad-CAM weighting"):
    gc.gradcam(model, x, weighting="cam")
  no_top = Model(get_spec("vgg16"), {})
  with pytest.raises(JaxvizError, match="no classifier top"):
    gc.gradcam(no_top, np.zeros((1, 32, 32, 3), np.float32))


def test_default_layers():
  assert gc.default_layer(get_spec("lenet")) == "activation_2"
  from jaxviz.models import vgg16
  assert gc.default_layer(vgg16.VGG16_TOP) == "block5_conv3"
