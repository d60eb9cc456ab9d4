import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import param
from jaxviz.errors import JaxvizError
from jaxviz.models import get_spec


def test_pixel_variables_are_offsets_from_the_neutral_pixel_in_grey_levels():
  neutral = np.array([123.68, 116.779, 103.939], np.float32)
  p = param.pixel(neutral, init_noise=0.0)
  v = p.init(np.random.default_rng(0), (2, 3, 3))
  np.testing.assert_allclose(v, np.broadcast_to(128.0 - neutral, (2, 3, 3)), rtol=1e-6)
  np.testing.assert_allclose(p.to_pixels(jnp.asarray(v)), 128.0, rtol=1e-6)
  assert p.pixel_space


def test_bounded_pixels_stay_in_range_and_start_grey():
  p = param.pixel(np.zeros(1, np.float32), init_noise=0.0, bounded=True)
  v = p.init(np.random.default_rng(0), (4, 4, 1))
  np.testing.assert_allclose(p.to_pixels(jnp.asarray(v)), 128.0, rtol=1e-3)
  far = p.to_pixels(jnp.full((4, 4, 1), 1e4))
  assert float(far.max()) <= 255.0 and float(p.to_pixels(jnp.full((4, 4, 1), -1e4)).min()) >= 0


def test_spectrum_scale_is_lucids():
  # 1 / max(f, 1/max(h, w)) · sqrt(h·w); f = 0 is capped at 1/max(h, w).
  scale = param.spectrum_scale(4, 6, decay_power=1.0)
  assert scale.shape == (4, 4)
  assert scale[0, 0] == pytest.approx(6 * np.sqrt(24))
  assert scale[0, 1] == pytest.approx(6 * np.sqrt(24))      # f = 1/6
  assert scale[1, 0] == pytest.approx(4 * np.sqrt(24))      # f = 1/4
  assert scale[2, 3] == pytest.approx(np.sqrt(24) / np.hypot(0.5, 0.5))
  np.testing.assert_allclose(param.spectrum_scale(4, 6, decay_power=0.0), np.sqrt(24))


def test_slope_ratio_is_the_steeper_scale_over_the_gentler():
  # (1 / max(f, 1/max(h, w))) ** (end - start); the sqrt(h·w) factors cancel.
  ratio = param.slope_ratio(4, 6, start=1.0, end=1.5)
  assert ratio.shape == (4, 4)
  assert ratio[0, 0] == pytest.approx(np.sqrt(6))                # f = 0, capped at 1/6
  assert ratio[1, 0] == pytest.approx(2.0)                       # f = 1/4
  assert ratio[2, 3] == pytest.approx(np.hypot(0.5, 0.5) ** -0.5)
  np.testing.assert_allclose(param.slope_ratio(4, 6, 1.5, 1.5), 1.0)


def test_fourier_image_is_bounded_and_a_single_coefficient_is_a_wave():
  p = param.fourier((8, 8, 1), decay_power=0.0, decorrelate=False)
  v = np.zeros((1, 8, 5, 2), np.float32)
  v[0, 0, 2, 0] = 1.0  # the real part of the wave with 2 cycles across
  pixels = np.asarray(p.to_pixels(jnp.asarray(v)))[..., 0]
  assert pixels.min() > 0 and pixels.max() < 255
  np.testing.assert_allclose(pixels, pixels[:1].repeat(8, 0), rtol=1e-6)  # constant down
  np.testing.assert_allclose(pixels[:, :4], pixels[:, 4:], rtol=1e-6)      # period 4 across
  flat = np.asarray(p.to_pixels(jnp.zeros((1, 8, 5, 2))))
  np.testing.assert_allclose(flat, 127.5, rtol=1e-6)


def test_colour_decorrelation_uses_the_normalized_matrix():
  m = param.COLOR_CORRELATION
  assert np.max(np.linalg.norm(m, axis=0)) == pytest.approx(1.0)
  p = param.fourier((4, 4, 3), decay_power=0.0, decorrelate=True)
  v = np.zeros((3, 4, 3, 2), np.float32)
  v[0, 0, 0, 0] = 1.0  # a constant in the first decorrelated channel
  pixels = np.asarray(p.to_pixels(jnp.asarray(v)))[0, 0]
  value = np.sqrt(16) / 16 / param.FOURIER_MAGIC  # the constant after the inverse FFT
  expected = 255 / (1 + np.exp(-(np.array([value, 0, 0]) @ m.T)))
  np.testing.assert_allclose(pixels, expected, rtol=1e-5)


def test_init_is_small_noise_and_shape_checked():
  p = param.fourier((6, 6, 3))
  v = p.init(np.random.default_rng(1), (6, 6, 3))
  assert v.shape == (3, 6, 4, 2) and 0.005 < v.std() < 0.02
  with pytest.raises(ValueError):
    p.init(np.random.default_rng(1), (7, 7, 3))


def test_make_names_the_valid_kinds():
  spec = get_spec("lenet")
  with pytest.raises(JaxvizError, match="unknown parameterization 'fft'.*pixel, fourier"):
    param.make("fft", (28, 28, 1), spec.neutral_pixel)


def test_model_pixel_maps_invert_preprocess():
  for name in ("lenet", "vgg16"):
    spec = get_spec(name)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, spec.input_shape[-1]))
    pixels = pixels.astype(np.float32)
    x = np.asarray(spec.pixels_to_input(jnp.asarray(pixels)))
    np.testing.assert_allclose(x, spec.preprocess(pixels), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(spec.input_to_pixels(jnp.asarray(x)), pixels, rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(get_spec("vgg16").neutral_pixel, [123.68, 116.779, 103.939],
                             rtol=1e-6)
  np.testing.assert_array_equal(get_spec("lenet").neutral_pixel, [0.0])


def test_fourier_gradients_reach_every_variable():
  p = param.fourier((8, 8, 3))
  v = jnp.asarray(p.init(np.random.default_rng(0), (8, 8, 3)))
  g = jax.grad(lambda v: jnp.sum(p.to_pixels(v)[2:5, 3:6]))(v)
  assert np.count_nonzero(np.asarray(g)) > 0.9 * g.size - 3 * 8 * 2  # Nyquist imaginaries are 0


@pytest.mark.parametrize("kind, channels", [
    ("pixel", 3), ("bounded", 3), ("fourier", 3), ("fourier", 1)])
def test_from_pixels_inverts_to_pixels(kind, channels):
  neutral = np.array([10.0, 20.0, 30.0], np.float32)[:channels]
  p = {"pixel": lambda: param.pixel(neutral),
       "bounded": lambda: param.pixel(neutral, bounded=True),
       "fourier": lambda: param.fourier((6, 8, channels), decay_power=1.5)}[kind]()
  pixels = np.random.default_rng(0).uniform(5, 250, (6, 8, channels)).astype(np.float32)
  back = p.to_pixels(p.from_pixels(jnp.asarray(pixels)))
  np.testing.assert_allclose(back, pixels, rtol=1e-4, atol=1e-2)
