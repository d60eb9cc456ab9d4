import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import objectives as O
from jaxviz.errors import JaxvizError
from jaxviz.models import get_spec
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec


def relu_conv_model():
  """One 1×1 conv with a fused ReLU, 1 → 2 channels (weights 1 and −1), on 2×2 grey images."""
  spec = ModelSpec(name="tiny", layers=(L.Conv("conv", 2, (1, 1), activation="relu"),),
                   input_shape=(2, 2, 1), fixed_input_size=True, num_classes=0,
                   preprocess=lambda p: p, to_display=lambda x: x)
  params = {"conv": {"kernel": jnp.array([1.0, -1.0]).reshape(1, 1, 1, 2), "bias": jnp.zeros(2)}}
  return spec, params


def probe(spec, params, images, unit, offsets=None):
  images = jnp.asarray(images, jnp.float32)
  offsets = images if offsets is None else jnp.asarray(offsets, jnp.float32)
  return O.Probe(spec, params, images, offsets, jnp.int32(unit))


IMAGE = np.array([[[[1.0], [-3.0]], [[2.0], [-4.0]]]])  # one 2×2 image


@pytest.mark.parametrize("channel_only", [True, False])
def test_channel_mean_post_relu_by_hand(channel_only):
  spec, params = relu_conv_model()
  objective = O.channel(spec, "conv", channel_only=channel_only)
  followed, reported = objective(probe(spec, params, IMAGE, 0), {})
  assert float(reported[0]) == pytest.approx((1 + 2) / 4)
  followed, reported = objective(probe(spec, params, IMAGE, 1), {})
  assert float(reported[0]) == pytest.approx((3 + 4) / 4)


def test_relu_rescue_follows_the_pre_activation_of_a_dead_map_but_reports_the_truth():
  spec, params = relu_conv_model()
  dark = -np.abs(IMAGE)  # channel 0 (weight 1) is negative everywhere: its ReLU map is all zero
  rescued = O.channel(spec, "conv")
  followed, reported = rescued(probe(spec, params, dark, 0), {})
  assert float(reported[0]) == 0.0
  assert float(followed[0]) == pytest.approx(-1.0)  # the peak of the pre-activation map
  grad = jax.grad(lambda x: rescued(probe(spec, params, x, 0), {})[0].sum())(jnp.asarray(dark))
  np.testing.assert_allclose(grad[0, ..., 0], [[1.0, 0.0], [0.0, 0.0]])  # the peak pushed up
  plain = O.channel(spec, "conv", rescue=False)
  grad = jax.grad(lambda x: plain(probe(spec, params, x, 0), {})[0].sum())(jnp.asarray(dark))
  np.testing.assert_array_equal(grad, 0.0)
  # A live map follows its true ReLU'd mean.
  followed, reported = rescued(probe(spec, params, IMAGE, 0), {})
  assert float(followed[0]) == float(reported[0])


def test_leaky_rescue_follows_every_place_below_zero_with_its_slope():
  spec, params = relu_conv_model()
  rescued = O.channel(spec, "conv")
  hp = {"rescue_slope": jnp.float32(0.5)}
  # Channel 0 of IMAGE is [[1, -3], [2, -4]]: followed (1 + 2 + 0.5 · (-3 - 4)) / 4.
  followed, reported = rescued(probe(spec, params, IMAGE, 0), hp)
  assert float(followed[0]) == pytest.approx(-0.125)
  assert float(reported[0]) == pytest.approx(0.75)  # the true post-ReLU mean
  grad = jax.grad(lambda x: rescued(probe(spec, params, x, 0), hp)[0].sum())(jnp.asarray(IMAGE))
  np.testing.assert_allclose(grad[0, ..., 0], [[0.25, 0.125], [0.25, 0.125]])
  # A map below zero everywhere: every place pulls (slope / 4), not only the peak.
  dark = -np.abs(IMAGE)
  followed, reported = rescued(probe(spec, params, dark, 0), hp)
  assert (float(followed[0]), float(reported[0])) == (pytest.approx(-1.25), 0.0)
  grad = jax.grad(lambda x: rescued(probe(spec, params, x, 0), hp)[0].sum())(jnp.asarray(dark))
  np.testing.assert_allclose(grad[0, ..., 0], np.full((2, 2), 0.125))
  # Slope 0 is the peak rule.
  zero = {"rescue_slope": jnp.float32(0.0)}
  assert float(rescued(probe(spec, params, dark, 0), zero)[0][0]) == pytest.approx(-1.0)


def test_before_relu_and_neuron_and_border():
  spec, params = relu_conv_model()
  pre = O.channel(spec, "conv", before_relu=True)
  assert float(pre(probe(spec, params, IMAGE, 0), {})[1][0]) == pytest.approx(-4 / 4)
  centre = O.neuron(spec, "conv")  # the map's centre of a 2×2 map is pixel (1, 1)
  assert float(centre(probe(spec, params, IMAGE, 1), {})[1][0]) == pytest.approx(4.0)
  with pytest.raises(JaxvizError, match="exclude_border=1 leaves nothing"):
    O.channel(spec, "conv", exclude_border=1)(probe(spec, params, IMAGE, 0), {})


def test_sums_and_multiples_with_hyperparameter_weights():
  spec, params = relu_conv_model()
  offsets = np.array([[[[0.5], [-0.5]], [[0.5], [-0.5]]]])
  objective = O.channel(spec, "conv") - 2.0 * O.l1() - O.Hyper("tv") * O.total_variation()
  assert objective.names == ["channel(conv)", "l1", "total_variation"]
  assert objective.hyperparameters == ["tv"]
  followed, reported = objective(probe(spec, params, IMAGE, 0, offsets), {"tv": jnp.float32(3.0)})
  # channel 0.75; l1 0.5; total variation: down 0, across 1 → 1.
  assert float(followed[0]) == pytest.approx(0.75 - 2 * 0.5 - 3 * 1.0)
  assert float(reported[0]) == pytest.approx(0.75)
  scaled = O.channel(spec, "conv") + 0.5 * (2.0 * (O.Hyper("w") * O.l2()))
  assert scaled.hyperparameters == ["w"]
  followed = scaled(probe(spec, params, IMAGE, 0, offsets), {"w": jnp.float32(4.0)})[0]
  assert float(followed[0]) == pytest.approx(0.75 + 4.0 * 0.5)  # l2 of ±0.5 is 0.5
  with pytest.raises(JaxvizError, match="at most one hyperparameter"):
    O.Hyper("a") * (O.Hyper("b") * O.l2())
  with pytest.raises(JaxvizError, match="no unit term"):
    O.l2()(probe(spec, params, IMAGE, 0, offsets), {})


def test_direction_is_a_dot_product_in_channel_space():
  spec, params = relu_conv_model()
  objective = O.direction(spec, "conv", np.array([[1.0, 1.0], [2.0, -1.0]]))
  # Post-ReLU maps: channel 0 → [1, 0, 2, 0], channel 1 → [0, 3, 0, 4].
  assert float(objective(probe(spec, params, IMAGE, 0), {})[1][0]) == pytest.approx(10 / 4)
  assert float(objective(probe(spec, params, IMAGE, 1), {})[1][0]) == pytest.approx((6 - 7) / 4)
  with pytest.raises(JaxvizError, match=r"shape \[K, 2\]"):
    O.direction(spec, "conv", np.ones((2, 3)))


def test_class_logit_is_the_unit_before_softmax():
  spec = get_spec("lenet")
  params = spec.init_params(jax.random.key(0))
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  logits = spec.module.apply({"params": params}, x, upto="dense_2", output="pre_activation")
  value = O.class_logit(spec)(probe(spec, params, x, 7), {})[1]
  np.testing.assert_allclose(value, logits[:, 7], rtol=1e-5)


def test_diversity_is_zero_for_one_image_and_pushes_identical_images_apart():
  spec, params = relu_conv_model()
  objective = O.channel(spec, "conv") + O.diversity(spec, "conv", output="activation")
  term = objective.parts[1][1].fn  # the diversity term alone: (followed, reported)
  one = term(probe(spec, params, IMAGE, 0), {})[0]
  np.testing.assert_array_equal(one, [0.0])
  same = np.concatenate([IMAGE, IMAGE])
  value = term(probe(spec, params, same, 0), {})[0]
  np.testing.assert_allclose(value, [-0.5, -0.5], rtol=1e-5)  # cosine 1 with the other, / D
  other = np.concatenate([np.abs(IMAGE), -np.abs(IMAGE)])  # one channel each: orthogonal Grams
  np.testing.assert_allclose(term(probe(spec, params, other, 0), {})[0], 0.0, atol=1e-6)
