import dataclasses

import jax
import numpy as np
import pytest

from jaxviz import wake
from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.errors import JaxvizError
from jaxviz.models import Model, get_spec
from jaxviz.resume import chunk_bytes, chunk_shapes, read_chunk

# The default preset's pieces, at a few steps.
SETTINGS = AscentSettings(steps=4, step_size=0.1, optimizer="adam", normalize_grad=False,
                          parameterization="fourier", decay_power=1.5, jitter=0.08, scale=0.15,
                          rotate=15.0, follow_relu=True, rescue=True, robustness_samples=4)


@pytest.fixture(scope="module")
def lenet():
  spec = get_spec("lenet")
  return Model(spec, spec.init_params(jax.random.key(0)))


@pytest.fixture(scope="module")
def main_run(lenet):
  engine = FilterEngine(lenet, "conv2d_2", SETTINGS)
  return engine, engine.run("0-3")


def test_the_second_pass_changes_the_variables_transforms_and_step_only():
  main = dataclasses.replace(SETTINGS, crop=0.75, frame=0.05, average=0.5, rescue_slope=0.1)
  woken = wake.wake_settings(main)
  changed = {f.name for f in dataclasses.fields(woken)
             if getattr(woken, f.name) != getattr(main, f.name)}
  assert changed == {"parameterization", "bounded", "step_size", "jitter", "scale", "rotate",
                     "frame", "crop", "average", "rescue_slope", "lift", "steps"}
  assert (woken.parameterization, woken.bounded, woken.step_size) == ("pixel", True,
                                                                      wake.STEP_SIZE)
  assert woken.jitter == woken.scale == woken.rotate == woken.pad == woken.frame == 0.0
  assert (woken.crop, woken.average) == (1.0, 0.0)
  assert (woken.rescue, woken.rescue_slope, woken.lift) == (True, 0.0, wake.LIFT)
  assert woken.steps == 2  # half of 4
  assert wake.wake_settings(dataclasses.replace(SETTINGS, steps=5)).steps == 2
  assert wake.wake_settings(dataclasses.replace(SETTINGS, steps=1)).steps == 1


def test_the_spectral_pass_keeps_the_main_spectrum_and_drops_the_transforms():
  main = dataclasses.replace(SETTINGS, crop=0.75, frame=0.05, average=0.5, rescue_slope=0.1,
                             decay_power_start=1.0, decay_power=1.75, decay_ramp=0.5)
  spectral = wake.wake_settings(main, "fourier")
  assert dataclasses.replace(spectral, parameterization="pixel") == wake.wake_settings(main)
  assert (spectral.parameterization, spectral.decay_power_start, spectral.decay_power,
          spectral.decay_ramp, spectral.decorrelate) == ("fourier", 1.0, 1.75, 0.5, True)


@pytest.mark.parametrize("text, expected", [
    ("pixel", ("pixel",)), ("fourier,pixel", ("fourier", "pixel")),
    (" fourier , pixel ", ("fourier", "pixel")), ("pixel,fourier", ("pixel", "fourier"))])
def test_parse_passes(text, expected):
  assert wake.parse_passes(text) == expected


@pytest.mark.parametrize("text", ["", " , ", "fourier,fourier", "pixels", "fourier,phase"])
def test_parse_passes_names_the_valid_ones(text):
  with pytest.raises(JaxvizError, match=r"wake_passes must name each of pixel, fourier at most "
                                        r"once.*e\.g\. 'fourier,pixel'"):
    wake.parse_passes(text)


def test_a_woken_history_is_the_second_pass_right_aligned(main_run):
  engine, result = main_run
  activations = result.activations.copy()
  activations[1, -1] = 0.0  # filter 1 made to read as dead
  waker = wake.Waker(engine)
  out = waker.revive(result._replace(activations=activations), seed=0)
  second = waker.second_pass(1, seed=0)
  assert second.activations.shape == (1, 2 + 1)
  if out.woken[1]:
    np.testing.assert_array_equal(out.activations[1, :2], np.nan)
    np.testing.assert_allclose(out.activations[1, 2:], second.activations[0], rtol=1e-5)


def test_live_results_pass_through_and_compile_nothing(main_run):
  engine, result = main_run
  live = result._replace(activations=np.abs(result.activations) + 1.0)
  waker = wake.Waker(engine)
  out = waker.revive(live, seed=0)
  assert not waker._engines  # no dead image: the second pass is never built
  for name in ("images", "activations", "robustness"):
    np.testing.assert_array_equal(getattr(out, name), getattr(live, name))
  assert not out.woken.any()


def test_a_dead_filter_gets_its_own_second_pass(main_run):
  engine, result = main_run
  # Filters 1 and 2 made to read as dead at the end (0 and a NaN); 0 and 3 stay as they are.
  activations = result.activations.copy()
  activations[:, -1] = np.maximum(activations[:, -1], 1e-3)
  activations[1, -1], activations[2, -1] = 0.0, np.nan
  marked = result._replace(activations=activations)
  waker = wake.Waker(engine)
  out = waker.revive(marked, seed=0)
  alone = {f: waker.second_pass(f, seed=0) for f in (1, 2)}
  for row, f in ((1, 1), (2, 2)):
    live = alone[f].activations[0, -1] > 0
    assert out.woken[row] == live
    if live:  # the row is exactly the filter's second pass run on its own
      np.testing.assert_allclose(out.images[row], alone[f].images[0], rtol=1e-5, atol=1e-4)
      np.testing.assert_allclose(out.activations[row, 2:], alone[f].activations[0], rtol=1e-5)
      np.testing.assert_allclose(out.robustness[row], alone[f].robustness[0], rtol=1e-5)
  assert out.woken.any(), "at least one of the two should fire in pixels without transforms"
  for row in (0, 3):
    assert not out.woken[row]
    np.testing.assert_array_equal(out.images[row], marked.images[row])
    np.testing.assert_array_equal(out.activations[row], marked.activations[row])
  assert out.filter_woken.tolist() == out.woken.tolist()


def test_a_group_of_dead_filters_equals_each_on_its_own(main_run):
  # The dead filters run in groups (`group_size`); a group's rows are each filter's second
  # pass alone.
  engine, _ = main_run
  grouped = wake.Waker(engine, group=2).second_pass([3, 1, 2], seed=0)
  waker = wake.Waker(engine, group=1)
  for row, f in enumerate((3, 1, 2)):
    alone = waker.second_pass(f, seed=0)
    np.testing.assert_allclose(grouped.images[row], alone.images[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(grouped.activations[row], alone.activations[0], rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(grouped.robustness[row], alone.robustness[0], rtol=1e-5)


def test_each_pass_takes_the_filters_the_passes_before_it_left_dead(main_run):
  # Spectrum, then pixels: a filter the spectral pass wakes keeps that image and never reaches
  # the pixel pass; one it leaves dead gets the pixel pass, exactly as on its own.
  engine, result = main_run
  activations = result.activations.copy()
  activations[:, -1] = np.maximum(activations[:, -1], 1e-3)
  activations[1, -1] = activations[2, -1] = 0.0
  marked = result._replace(activations=activations)
  chain = wake.Waker(engine, group=1, passes=("fourier", "pixel"))
  spectral = {f: chain.second_pass(f, seed=0, parameterization="fourier") for f in (1, 2)}
  pixel = {f: chain.second_pass(f, seed=0, parameterization="pixel") for f in (1, 2)}
  # Filter 1 made to read as dead after the spectral pass (its final activation zeroed in
  # that pass's real result), so that it goes on to the pixel pass.
  calls = []
  original = chain.second_pass

  def second_pass(filters, seed, limit=0, parameterization=None):
    calls.append((parameterization, [int(f) for f in filters]))
    out = original(filters, seed, limit, parameterization)
    if parameterization == "fourier":
      activations = out.activations.copy()
      activations[[k for k, f in enumerate(filters) if f == 1], -1] = 0.0
      out = out._replace(activations=activations)
    return out

  chain.second_pass = second_pass
  out = chain.revive(marked, seed=0)
  assert calls == [("fourier", [1, 2]), ("pixel", [1])]
  assert set(chain._engines) == {"fourier", "pixel"}
  assert chain.engine("fourier").settings.parameterization == "fourier"
  assert spectral[2].activations[0, -1] > 0 and pixel[1].activations[0, -1] > 0
  assert out.woken[1] and out.woken[2]
  np.testing.assert_allclose(out.images[2], spectral[2].images[0], rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(out.images[1], pixel[1].images[0], rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(out.activations[1, 2:], pixel[1].activations[0], rtol=1e-5)
  for row in (0, 3):
    np.testing.assert_array_equal(out.images[row], marked.images[row])


def test_the_woken_marks_survive_a_resume_file(tmp_path, main_run):
  _, result = main_run
  marked = result._replace(woken=np.array([False, True, False, True]))
  path = tmp_path / "chunk.npz"
  path.write_bytes(chunk_bytes(marked))
  back = read_chunk(path, [0, 1, 2, 3], chunk_shapes(result.images.shape[1:], SETTINGS.steps))
  assert back.woken.tolist() == [False, True, False, True]
  path.write_bytes(chunk_bytes(result))  # no second pass ran: nothing marked
  assert not read_chunk(path, [0, 1, 2, 3],
                        chunk_shapes(result.images.shape[1:], SETTINGS.steps)).woken.any()


@pytest.mark.parametrize("count, devices, limit, expected", [
    (3, 2, 16, 4),    # one call of two per device instead of two calls of one
    (1, 2, 16, 2),    # every device gets a filter, padded
    (5, 2, 16, 8),    # powers of two: few compiled shapes over a layer's chunks
    (9, 2, 10, 10),   # never more than the chunk the main pass ran
    (3, 1, 64, 4),
    (2, 4, 3, 4),     # a chunk smaller than the devices still fills each device once
])
def test_group_size(count, devices, limit, expected):
  assert wake.group_size(count, devices, limit) == expected
