"""The ReLU backward rules of saliency, guided backprop and deconvnet, checked by hand on tiny
inputs, alone and inside a model through the attribution view."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz.models import Model
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec
from jaxviz.views import attribution
from jaxviz.views.relu_rules import RULES, deconvnet_relu, guided_relu

X = jnp.array([-1.0, 2.0, 3.0, -0.5])
G = jnp.array([1.0, -1.0, 2.0, 3.0])


def backward(relu, x, g):
  _, pullback = jax.vjp(relu, x)
  return pullback(g)[0]


def test_forward_is_relu_for_every_rule():
  for relu in RULES.values():
    np.testing.assert_array_equal(relu(X), [0.0, 2.0, 3.0, 0.0])


def test_backward_rules_by_hand():
  np.testing.assert_array_equal(backward(RULES["saliency"], X, G), [0.0, -1.0, 2.0, 0.0])
  np.testing.assert_array_equal(backward(guided_relu, X, G), [0.0, 0.0, 2.0, 0.0])
  np.testing.assert_array_equal(backward(deconvnet_relu, X, G), [1.0, 0.0, 2.0, 3.0])


def test_rules_work_under_jit_and_vmap():
  grad = jax.jit(jax.vmap(lambda x, g: backward(guided_relu, x, g)))
  np.testing.assert_array_equal(grad(X[None], G[None])[0], [0.0, 0.0, 2.0, 0.0])


def tiny_model(fused: bool) -> Model:
  """x [1, 1, 2] → dense 3 → ReLU → dense 2 (logits), weights chosen by hand.

  With x = [1, 1]: pre-ReLU h = [2, -0.5, 2]; the gradient of logit 0 at h is [2, 1, -1].
  """
  hidden = [L.Flatten("flatten"), L.Dense("hidden", 3, activation="relu" if fused else None)]
  if not fused:
    hidden.append(L.Activation("relu", "relu"))
  spec = ModelSpec(
      name="tiny", layers=(*hidden, L.Dense("logits", 2), L.Activation("softmax", "softmax")),
      input_shape=(1, 1, 2), fixed_input_size=True, num_classes=2,
      preprocess=lambda p: np.asarray(p, np.float32), to_display=lambda x: x,
      logits_layer="logits")
  params = {
      "hidden": {"kernel": jnp.array([[1.0, -1.0, 1.0], [1.0, 0.5, 1.0]]), "bias": jnp.zeros(3)},
      "logits": {"kernel": jnp.array([[2.0, 0.0], [1.0, 0.0], [-1.0, 0.0]]),
                 "bias": jnp.zeros(2)},
  }
  return Model(spec, params)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("method, expected", [
    # saliency: h-gradient [2, 1, -1] · [h > 0] = [2, 0, -1]        → W1 @ it = [1, 1]
    ("saliency", [1.0, 1.0]),
    # guided: [2, 1, -1] · [h > 0] · [g > 0] = [2, 0, 0]            → [2, 2]
    ("guided", [2.0, 2.0]),
    # deconvnet: relu([2, 1, -1]) = [2, 1, 0]                        → [1, 2.5]
    ("deconvnet", [1.0, 2.5]),
])
def test_attribution_through_a_model_by_hand(fused, method, expected):
  model = tiny_model(fused)
  x = np.ones((1, 1, 1, 2), np.float32)
  result = attribution.attribution(model, x, method, classes=[0])
  np.testing.assert_allclose(result.maps[0, 0, 0, 0], expected, rtol=1e-6)
  np.testing.assert_allclose(result.scores[0, 0], 2.0)  # relu(h) = [2, 0, 2] → 4 + 0 - 2


def test_saliency_is_the_plain_gradient_of_the_logit():
  model = tiny_model(True)
  x = np.random.default_rng(0).normal(size=(5, 1, 1, 2)).astype(np.float32)

  def logit(image, k):
    out = model.spec.module.apply({"params": model.params}, image[None], upto="logits")
    return out[0, k]

  result = attribution.attribution(model, x, "saliency", classes="0,1")
  for i in range(5):
    for j, k in enumerate([0, 1]):
      np.testing.assert_allclose(result.maps[i, j], jax.grad(logit)(x[i], k), rtol=1e-5,
                                 atol=1e-6)


def test_top_k_targets_follow_the_prediction():
  model = tiny_model(True)
  x = np.array([[[[1.0, 1.0]]], [[[-1.0, -1.0]]]], np.float32)  # logits [2, 0] and [0, 0]
  result = attribution.attribution(model, x, "guided", top_k=2)
  assert result.targets[0].tolist() == [0, 1]
  assert result.maps.shape == (2, 2, 1, 1, 2)


def test_sequential_relu_default_is_the_plain_relu():
  assert L.Sequential(()).relu is RULES["saliency"]
  module = functools.partial(L.Sequential, (L.Activation("a", "relu"),))
  x = jnp.array([[-1.0, 2.0]])
  for relu in RULES.values():
    np.testing.assert_array_equal(module(relu=relu).apply({}, x), [[0.0, 2.0]])
