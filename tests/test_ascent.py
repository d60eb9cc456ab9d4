import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import ascent, param
from jaxviz.ascent import AscentSettings
from jaxviz.errors import JaxvizError
from jaxviz.models import get_spec


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
    (dict(decay_ramp=1.5), "decay_ramp is a fraction of the steps"),
    (dict(decay_power_start=-1.0), "decay_power_start must be"),
    (dict(frame=0.6), "frame is a fraction"),
    (dict(rescue_slope=2.0), "rescue_slope is the slope"),
    (dict(average=1.0), "average is the weight"),
    (dict(lift=-0.5), "lift is the fraction"),
])
def test_bad_settings_name_the_problem(bad, match):
  with pytest.raises(JaxvizError, match=match):
    AscentSettings(**bad).validate()


def test_the_spectrums_slope_ramps_from_start_to_end_over_its_fraction_of_the_steps():
  settings = AscentSettings(parameterization="fourier", optimizer="adam", normalize_grad=False,
                            decay_power=1.5, decay_power_start=1.0, decay_ramp=0.5, steps=8)
  a = ascent.make_ascent(get_spec("lenet"), "conv2d_2", settings)
  ratio = param.slope_ratio(28, 28, 1.0, 1.5)
  np.testing.assert_allclose(a.steepen, ratio)
  np.testing.assert_allclose(ascent._steepening(a, 0), 1.0)
  np.testing.assert_allclose(ascent._steepening(a, 2), ratio ** 0.5, rtol=1e-6)
  for step in (4, 7):  # half of 8 steps, and after
    np.testing.assert_allclose(ascent._steepening(a, step), ratio, rtol=1e-6)
  assert float(a.steepen[0, 0]) == pytest.approx(np.sqrt(28))  # f = 0, capped at 1/28
  # The variables live in the start's spectrum; pixels and no ramp have no factor.
  v = jnp.asarray(np.random.default_rng(0).normal(0, 0.01, (1, 28, 15, 2)), jnp.float32)
  np.testing.assert_allclose(a.param.to_pixels(v),
                             param.fourier((28, 28, 1), decay_power=1.0).to_pixels(v), rtol=1e-6)
  for other in (dataclasses.replace(settings, decay_ramp=0.0),
                dataclasses.replace(settings, parameterization="pixel")):
    assert ascent.make_ascent(get_spec("lenet"), "conv2d_2", other).steepen is None


def test_the_running_average_weighs_each_step_by_the_hyperparameter():
  hp = {"average": jnp.float32(0.75)}
  mean = ascent.average(jnp.float32(4.0), jnp.float32(8.0), hp)
  assert float(mean) == pytest.approx(0.75 * 4 + 0.25 * 8)
  assert float(ascent.average(jnp.float32(4.0), jnp.float32(8.0),
                              {"average": jnp.float32(0.0)})) == 8.0


def test_the_crop_applies_only_to_layers_computed_from_part_of_the_image():
  spec = get_spec("lenet")
  assert ascent.takes_windows(spec, "conv2d_2")
  assert not ascent.takes_windows(spec, "dense_2")  # after the Flatten: the whole image
  cropped = AscentSettings(crop=0.75)
  image = jnp.ones((28, 28, 1))
  hp = {k: jnp.asarray(v) for k, v in cropped.hyperparameters().items()}
  view = lambda layer: ascent.make_ascent(spec, layer, cropped).transform(
      jax.random.key(0), image, hp)
  assert view("conv2d_2").shape == (21, 21, 1)
  assert view("dense_2").shape == (28, 28, 1)


def test_the_lift_follows_the_map_before_its_relu_for_its_part_of_the_steps():
  a = ascent.make_ascent(get_spec("lenet"), "conv2d_2", AscentSettings(steps=8))
  hp = {"lift": jnp.float32(0.25), "rescue_slope": jnp.float32(0.1)}
  slopes = [float(ascent.lifted(a, hp, i)["rescue_slope"]) for i in range(8)]
  assert slopes == pytest.approx([1.0, 1.0] + [0.1] * 6)  # the first quarter: slope 1


@pytest.mark.parametrize("name", ["seed", "yosinski", "lucid", "default", "sharp", "wide",
                                  "strong"])
def test_gallery_presets_are_valid_settings(name):
  from jaxviz.config import load_config
  config = load_config(name)
  assert config.preset == name
  AscentSettings.from_config(config).validate()


def test_the_default_wakes_dead_filters_in_the_spectrum_then_in_pixels():
  from jaxviz import wake
  from jaxviz.config import load_config
  default, seed = load_config("default"), load_config("seed")
  assert default.wake and wake.parse_passes(default.wake_passes) == ("fourier", "pixel")
  assert not seed.wake and wake.parse_passes(seed.wake_passes) == wake.PASSES == ("pixel",)


def test_strong_is_the_default_with_narrower_zooms_and_rotations():
  from jaxviz.config import load_config
  default, strong = load_config("default").to_dict(), load_config("strong").to_dict()
  assert {k for k in default if default[k] != strong[k]} == {"preset", "scale", "rotate"}
  assert all(strong[k] < default[k] for k in ("scale", "rotate"))


def test_sharp_is_strong_with_its_window_cut_last():
  from jaxviz.config import load_config
  strong, sharp = load_config("strong").to_dict(), load_config("sharp").to_dict()
  assert {k for k in strong if strong[k] != sharp[k]} == {"preset", "crop_first"}
  assert strong["crop_first"] and not sharp["crop_first"]


def test_wide_is_sharp_with_wider_transforms():
  from jaxviz.config import load_config
  sharp, wide = load_config("sharp").to_dict(), load_config("wide").to_dict()
  assert {k for k in sharp if sharp[k] != wide[k]} == {"preset", "jitter", "scale", "rotate"}
  assert all(wide[k] > sharp[k] for k in ("jitter", "scale", "rotate"))


def test_step_map_shape_is_the_windows_map_where_the_layer_takes_windows():
  spec = get_spec("lenet")
  windowed = AscentSettings(crop=0.875)
  assert ascent.step_map_shape(spec, "conv2d_2", windowed) == (12, 12, 50)  # 24 of 28 pixels
  assert ascent.step_map_shape(spec, "conv2d_2", AscentSettings()) == (14, 14, 50)
  assert ascent.step_map_shape(spec, "dense_1", windowed) == (500,)  # after a Flatten
