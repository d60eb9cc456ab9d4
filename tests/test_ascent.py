import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import ascent
from jaxviz.ascent import AscentSettings
from jaxviz.errors import JaxvizError


def test_cosine_schedule_runs_from_the_step_size_down_to_a_tenth():
  sgd = ascent.make_optimizer("sgd", 2.0, "cosine", steps=4)
  state = sgd.init(jnp.zeros(1))
  moves = []
  for _ in range(5):
    updates, state = sgd.update(-jnp.ones(1), state)
    moves.append(float(updates[0]))
  # SGD moves by the rate itself: 2 · (0.1 + 0.9 · (1 + cos(π t / 4)) / 2), t = 0 … 4 (capped).
  expected = [2 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t / 4))) for t in (0, 1, 2, 3, 4)]
  np.testing.assert_allclose(moves, expected, rtol=1e-5)
  constant = ascent.make_optimizer("sgd", 2.0)
  assert float(constant.update(-jnp.ones(1), constant.init(jnp.zeros(1)))[0][0]) == 2.0


def test_the_learning_rate_is_an_injected_hyperparameter():
  state = ascent.make_optimizer("adam", jnp.float32(0.3)).init(jnp.zeros(2))
  assert "learning_rate" in state.hyperparams
  assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.3)


def test_hyperparameters_are_float32_scalars_of_every_traced_setting():
  hp = AscentSettings(step_size=0.5, rotate=12.0).hyperparameters()
  assert set(hp) == set(ascent.HYPERPARAMETERS)
  assert hp["step_size"] == np.float32(0.5) and hp["rotate"] == np.float32(12.0)
  assert all(isinstance(v, np.float32) for v in hp.values())


@pytest.mark.parametrize("bad, match", [
    (dict(step_size=float("nan")), "step_size must be a finite number"),
    (dict(schedule="linear"), "unknown schedule 'linear'"),
    (dict(parameterization="fft"), "unknown parameterization"),
    (dict(jitter=0.9), "jitter is a fraction"),
    (dict(scale=1.0), "scale must be in"),
    (dict(diversity=0), "diversity"),
    (dict(parameterization="fourier", blur_sigma=1.0), "blur_sigma: these regularizers act on "
                                                       "pixel variables"),
    (dict(tv_weight=-1.0), "tv_weight must be"),
])
def test_bad_settings_name_the_problem(bad, match):
  with pytest.raises(JaxvizError, match=match):
    AscentSettings(**bad).validate()
