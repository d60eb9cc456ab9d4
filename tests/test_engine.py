import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import engine as engine_module
from jaxviz import transforms
from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.errors import JaxvizError
from jaxviz.models import Model, get_spec
from jaxviz.models import layers as L
from jaxviz.models.spec import ModelSpec


def tiny_linear_model(weight: float) -> Model:
  """One 1×1 conv, 1 → 2 channels, no activation, on 2×2 grey images scaled by 1/255."""
  spec = ModelSpec(name="tiny", layers=(L.Conv("conv", 2, (1, 1)),), input_shape=(2, 2, 1),
                   fixed_input_size=True, num_classes=0, preprocess=lambda p: p / 255.0,
                   to_display=lambda x: x)
  params = {"conv": {"kernel": jnp.array([weight, -weight]).reshape(1, 1, 1, 2),
                     "bias": jnp.zeros(2)}}
  return Model(spec, params)


@pytest.fixture(scope="module")
def lenet():
  spec = get_spec("lenet")
  return Model(spec, spec.init_params(jax.random.key(0)))


def test_normalized_step_matches_hand_computation():
  # The step acts on pixels (0–255 grey levels), as the seeds' did, whatever the model reads.
  model = tiny_linear_model(2.0)
  settings = AscentSettings(steps=1, step_size=1.0, init_noise=0.0)
  result = FilterEngine(model, "conv", settings).run("0")
  # Objective: mean(2 p / 255) over 4 pixels → gradient g = 0.5 / 255 per pixel; the normalized
  # step moves each pixel by g / (g + 1e-5) grey levels.
  g = 0.5 / 255
  moved = 128 + g / (g + 1e-5)
  np.testing.assert_allclose(result.images[0], moved / 255, rtol=1e-6)
  np.testing.assert_allclose(result.activations[0], [2 * 128 / 255, 2 * moved / 255], rtol=1e-5)


def test_step_size_and_optax_optimizer_are_used():
  model = tiny_linear_model(2.0)
  g = 0.5 / 255
  sgd = FilterEngine(model, "conv", AscentSettings(steps=3, step_size=10.0, init_noise=0)).run("0")
  np.testing.assert_allclose(sgd.images[0], (128 + 3 * 10.0 * g / (g + 1e-5)) / 255, rtol=1e-5)
  adam = FilterEngine(model, "conv", AscentSettings(steps=3, step_size=10.0, init_noise=0,
                                                    optimizer="adam")).run("0")
  np.testing.assert_allclose(adam.images[0], (128 + 30.0) / 255, rtol=1e-4)  # Adam: lr per step


def test_each_filter_ascends_its_own_channel():
  # Filter 1 has the negated kernel, so its image must get darker while filter 0's brightens.
  result = FilterEngine(tiny_linear_model(1.0), "conv", AscentSettings(steps=4, init_noise=0)).run()
  assert result.images[0].mean() > 128 / 255 > result.images[1].mean()
  assert np.all(np.diff(result.activations, axis=1) > 0)


def test_objective_rises_under_ascent_on_lenet(lenet):
  result = FilterEngine(lenet, "conv2d_2", AscentSettings(steps=10)).run("0-7")
  assert result.activations.shape == (8, 11)
  assert np.all(result.activations[:, -1] > result.activations[:, 0])


@pytest.mark.parametrize("loop", ["unroll", "scan", "python"])
def test_all_filter_run_equals_single_runs_and_any_chunking(lenet, loop):
  settings = AscentSettings(steps=4, jitter=0.07, decay=0.01, blur_sigma=0.5, blur_every=2,
                            loop=loop)
  engine = FilterEngine(lenet, "conv2d_2", settings)
  everything = engine.run("all", seed=3)
  chunked = engine.run("all", seed=3, chunk_size=7)  # 50 = 7·7 + 1: last chunk padded
  np.testing.assert_array_equal(chunked.images, everything.images)
  for k in (0, 17, 49):
    alone = engine.run([k], seed=3)
    np.testing.assert_allclose(alone.images[0], everything.images[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(alone.activations[0], everything.activations[k], rtol=1e-5)


def test_loops_and_channel_only_agree(lenet):
  base = FilterEngine(lenet, "conv2d_2", AscentSettings(steps=3, channel_only=False)).run("0-9")
  for kwargs in ({"channel_only": True}, {"image_only_grad": False}, {"loop": "unroll"},
                 {"loop": "python"}):
    other = FilterEngine(lenet, "conv2d_2", AscentSettings(steps=3, **kwargs)).run("0-9")
    np.testing.assert_allclose(other.images, base.images, rtol=1e-4, atol=1e-4)


def test_jitter_keys_differ_per_filter_but_not_per_run(lenet):
  settings = AscentSettings(steps=2, jitter=0.1)
  engine = FilterEngine(lenet, "conv2d_2", settings)
  first, again = engine.run("0-3", seed=1), engine.run("0-3", seed=1)
  np.testing.assert_array_equal(first.images, again.images)
  other_seed = engine.run("0-3", seed=2)
  assert not np.allclose(first.images, other_seed.images)


def test_no_recompilation_on_a_second_call(lenet):
  engine = FilterEngine(lenet, "conv2d_2", AscentSettings(steps=2))
  engine.run("0-9", chunk_size=4)
  assert engine.traces == 1  # 3 chunks, the last padded: one program
  engine.run("10-19", chunk_size=4, seed=5)
  assert engine.traces == 1


def test_cpu_compiler_options_change_no_image(lenet, monkeypatch):
  # The engine compiles with XLA:CPU's older fusion emitters (a faster compile); with the seeds'
  # normalized steps the images are those of XLA's defaults: bit for bit on a Xeon with AMX, and
  # within one float32 rounding (6e-8 on a few pixels) on an AMD EPYC, whose vector code differs.
  settings = AscentSettings(steps=3, jitter=0.05, decay=0.01)
  assert engine_module.compiler_options() == engine_module.CPU_COMPILER_OPTIONS
  tuned = FilterEngine(lenet, "conv2d_2", settings).run("0-3")
  monkeypatch.setattr(engine_module, "compiler_options", lambda: None)
  plain = FilterEngine(lenet, "conv2d_2", settings).run("0-3")
  np.testing.assert_allclose(tuned.images, plain.images, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(tuned.activations, plain.activations, rtol=1e-6, atol=1e-7)


def test_step_size_compiles_nothing(lenet):
  engine = FilterEngine(lenet, "conv2d_2", AscentSettings(steps=2, decay=0.01, jitter=0.05))
  first = engine.run("0-3")
  other = AscentSettings(steps=2, decay=0.2, jitter=0.1, step_size=5.0)
  second = engine.run("0-3", settings=other)
  assert engine.traces == 1
  assert not np.allclose(first.images, second.images)
  alone = FilterEngine(lenet, "conv2d_2", other).run("0-3")
  np.testing.assert_allclose(second.images, alone.images, rtol=1e-5, atol=1e-6)
  with pytest.raises(JaxvizError, match="need another engine: steps"):
    engine.run("0-3", settings=AscentSettings(steps=3, decay=0.01, jitter=0.05))


def test_the_final_image_is_the_running_average_of_the_steps():
  # Normalized SGD on the tiny linear model moves every pixel by the same m per step, so the
  # iterates are 128 + t·m and their running average can be written out.
  model = tiny_linear_model(2.0)
  g = 0.5 / 255
  m = g / (g + 1e-5)
  beta = 0.5
  averaged = FilterEngine(model, "conv", AscentSettings(steps=3, init_noise=0.0,
                                                        average=beta)).run("0")
  mean = 128.0
  for t in (1, 2, 3):
    mean = beta * mean + (1 - beta) * (128 + t * m)
  np.testing.assert_allclose(averaged.images[0], mean / 255, rtol=1e-6)
  np.testing.assert_allclose(averaged.activations[0, -1], 2 * mean / 255, rtol=1e-5)


def test_leaky_rescue_and_average_values_compile_nothing(small_vgg):
  settings = AscentSettings(**LUCID_LIKE)
  engine = FilterEngine(small_vgg, "block2_conv1", settings, size=32)
  engine.run("0-1")
  other = AscentSettings(**dict(LUCID_LIKE, rescue_slope=0.2, lift=0.3, average=0.5))
  again = engine.run("0-1", settings=other)
  assert engine.traces == 1
  alone = FilterEngine(small_vgg, "block2_conv1", other, size=32).run("0-1")
  np.testing.assert_allclose(again.images, alone.images, rtol=1e-5, atol=1e-4)


def test_start_images_seed_a_second_pass(lenet):
  engine = FilterEngine(lenet, "conv2d_2", AscentSettings(steps=3))
  first = engine.run("0-4")
  second = engine.run("0-4", start_images=first.images)
  np.testing.assert_allclose(second.activations[:, 0], first.activations[:, -1], rtol=1e-5)
  with pytest.raises(JaxvizError, match="start_images must have shape"):
    engine.run("0-4", start_images=first.images[:2])


def test_dense_layer_units_are_filters(lenet):
  result = FilterEngine(lenet, "dense_2", AscentSettings(steps=3)).run()
  assert result.images.shape == (10, 28, 28, 1)
  assert np.all(result.activations[:, -1] > result.activations[:, 0])


@pytest.mark.parametrize("bad, match", [
    (dict(steps=0), "steps must be"),
    (dict(step_size=-1.0), "step_size must be"),
    (dict(optimizer="adamm"), "unknown optimizer 'adamm'.*Did you mean 'adam'"),
    (dict(loop="while"), "unknown loop"),
    (dict(clip_norm_percentile=100.0), "clip_norm_percentile"),
    (dict(crop=0.0), r"crop is the fraction of the image side each step sees, in \(0, 1\]"),
])
def test_bad_settings_are_refused(lenet, bad, match):
  with pytest.raises(JaxvizError, match=match):
    FilterEngine(lenet, "conv2d_2", AscentSettings(**bad))


def test_unknown_layer_lists_the_valid_ones(lenet):
  with pytest.raises(JaxvizError, match="unknown layer.*'conv2d_3'.*Valid: conv2d_1, "):
    FilterEngine(lenet, "conv2d_3")


@pytest.fixture(scope="module")
def small_vgg():
  spec = get_spec("vgg16")
  return Model(spec, spec.init_params(jax.random.key(1), size=32))


LUCID_LIKE = dict(parameterization="fourier", optimizer="adam", step_size=0.05,
                  normalize_grad=False, jitter=0.06, scale=0.1, rotate=10.0, steps=3)


@pytest.mark.parametrize("kwargs", [
    LUCID_LIKE,
    dict(LUCID_LIKE, decorrelate=False, pad=0.1, decay=0.01),
    dict(LUCID_LIKE, decay_power=1.5, decay_power_start=1.0, decay_ramp=0.5),
    dict(steps=3, bounded=True, optimizer="adam", step_size=5.0, tv_weight=0.5, l1_weight=0.1),
    dict(steps=3, jitter=0.1, objective="neuron", before_relu=True),
    dict(LUCID_LIKE, crop=0.75),
    dict(LUCID_LIKE, crop=0.75, crop_first=True, frame=0.05),
    dict(LUCID_LIKE, frame=0.05, rescue_slope=0.1, lift=0.5, average=0.5),
])
def test_every_parameterization_keeps_the_contract_on_rgb(small_vgg, kwargs):
  engine = FilterEngine(small_vgg, "block2_conv1", AscentSettings(**kwargs), size=32)
  everything = engine.run("0-5", seed=2)
  for k in (0, 4):
    alone = engine.run([k], seed=2)
    np.testing.assert_allclose(alone.images[0], everything.images[k], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(alone.activations[0], everything.activations[k], rtol=1e-5,
                               atol=1e-6)
  assert engine.traces == 2  # the chunk of 6 and the chunk of 1
  assert np.all(np.isfinite(everything.robustness))


def _fixed_and_ramped(small_vgg, start, filters):
  """The results of `filters` with the spectrum's slope fixed at 1.5, and ramped from `start`."""
  fixed = AscentSettings(**dict(LUCID_LIKE, decay_power=1.5))
  ramped = AscentSettings(**dict(LUCID_LIKE, decay_power=1.5, decay_power_start=start,
                                 decay_ramp=0.5))
  return [FilterEngine(small_vgg, "block2_conv1", s, size=32).run(filters, seed=3)
          for s in (fixed, ramped)]


def test_a_ramp_from_a_slope_to_itself_changes_nothing(small_vgg):
  a, b = _fixed_and_ramped(small_vgg, 1.5, "0-1")
  # The factor is exactly 1, but another program rounds differently and Adam's near-sign first
  # steps carry that into the image: equal to a fraction of a grey level.
  np.testing.assert_allclose(b.images, a.images, atol=0.5)
  np.testing.assert_allclose(b.activations, a.activations, rtol=1e-2, atol=1e-3)


def test_a_steepening_slope_changes_the_images(small_vgg):
  a, b = _fixed_and_ramped(small_vgg, 1.0, "0")
  assert not np.allclose(b.images, a.images, atol=1e-2)


def test_diversity_gives_several_distinct_images_per_filter(lenet):
  settings = AscentSettings(steps=4, diversity=3, diversity_weight=1.0, jitter=0.05)
  engine = FilterEngine(lenet, "conv2d_2", settings)
  result = engine.run("0-3", seed=1)
  assert result.images.shape == (4, 3, 28, 28, 1)
  assert result.activations.shape == (4, 3, 5) and result.robustness.shape == (4, 3)
  assert result.final_activations.shape == (4,)
  assert not np.allclose(result.images[:, 0], result.images[:, 1])
  alone = engine.run([2], seed=1)
  np.testing.assert_allclose(alone.images[0], result.images[2], rtol=1e-5, atol=1e-5)


def test_robustness_is_the_held_out_mean_over_the_activation(lenet):
  result = FilterEngine(lenet, "conv2d_2", AscentSettings(steps=5)).run("3,9")
  held_out = transforms.robustness_transform()
  for row, f in enumerate((3, 9)):
    moved = [held_out(jax.random.fold_in(jax.random.key(transforms.ROBUSTNESS_SEED), i),
                      jnp.asarray(result.images[row])) for i in range(16)]
    maps = lenet.features(jnp.stack(moved), "activation_2")[..., f]  # after conv2d_2's ReLU
    expected = float(jnp.mean(maps)) / result.activations[row, -1]
    assert float(result.robustness[row]) == pytest.approx(expected, rel=1e-4)
  none = FilterEngine(lenet, "conv2d_2", AscentSettings(steps=1, robustness_samples=0)).run("0")
  assert np.isnan(none.robustness[0])
