"""Class-output maximization on a (briefly) trained LeNet: every image ends up with its own
class's logit above all others, and the second pass continues from the first."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxviz import data, train
from jaxviz.engine import AscentSettings
from jaxviz.errors import JaxvizError
from jaxviz.models import Model, get_spec
from jaxviz.views import classes as cl

STEPS = 15


@pytest.fixture(scope="module")
def trained_lenet():
  """LeNet after 25 Adam steps of 32 digits: about 80 % test accuracy, enough to have classes."""
  spec = get_spec("lenet")
  images, labels = data.load_dataset("digits", "train")
  optimizer = optax.adam(2e-3)
  params = he_normal(spec, np.random.default_rng(0))  # no compiled init: faster on CPU
  state = train.TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
  step = train.make_train_step(spec, optimizer, 0)
  rng = np.random.default_rng(0)
  for _ in range(25):
    idx = rng.choice(len(labels), 32, replace=False)
    state, _ = step(state, images[idx], labels[idx], jax.random.key(1))
  return Model(spec, state.params)


def he_normal(spec, rng):
  """Kernels ~ N(0, 2 / fan_in), zero biases, in the shapes the spec declares."""
  params = {}
  for layer, shapes in spec.param_shapes().items():
    kernel = shapes["kernel"]
    fan_in = int(np.prod(kernel[:-1]))
    params[layer] = {"kernel": jnp.asarray(rng.normal(0, np.sqrt(2 / fan_in), kernel),
                                           jnp.float32),
                     "bias": jnp.zeros(shapes["bias"], jnp.float32)}
  return params


@pytest.fixture(scope="module")
def result(trained_lenet):
  settings = AscentSettings(steps=STEPS, step_size=12.75, loop="python")  # 0.05 of 0–1
  return cl.maximize_classes(trained_lenet, "all", settings, passes=2, seed=0)


def test_each_target_logit_ends_above_the_others(result):
  assert result.classes.tolist() == list(range(10))
  assert result.images.shape == (10, 28, 28, 1)
  assert result.logits.shape == (10, 10)
  for k in range(10):
    others = np.delete(result.logits[k], k)
    assert result.logits[k, k] > others.max(), (k, result.logits[k])
  assert (result.predicted == result.classes).all()
  assert (result.probabilities > 0.5).all()


def test_logits_rise_and_the_second_pass_starts_where_the_first_ended(result):
  history = result.activations
  assert history.shape == (10, 2 * (STEPS + 1))
  assert (history[:, STEPS] > history[:, 0]).all()
  assert (history[:, -1] > history[:, STEPS]).all()
  np.testing.assert_allclose(history[:, STEPS + 1], history[:, STEPS], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(history[:, -1], result.logits[np.arange(10), result.classes],
                             rtol=1e-4, atol=1e-4)


def test_the_target_is_the_logit_before_the_softmax(result, trained_lenet):
  logits = np.asarray(trained_lenet.features(result.images, "dense_2"))
  np.testing.assert_allclose(result.logits, logits, rtol=1e-5, atol=1e-4)
  assert result.logits.max() > 1.0  # not probabilities


def test_bad_requests_fail_clearly(trained_lenet):
  with pytest.raises(JaxvizError, match="class index 10 is out of range.*model has 10"):
    cl.parse_classes(trained_lenet.spec, "3,10")
  with pytest.raises(JaxvizError, match="no classifier top"):
    cl.maximize_classes(Model(get_spec("vgg16"), {}), "all")
  with pytest.raises(JaxvizError, match="passes"):
    cl.maximize_classes(trained_lenet, "1", passes=0)
