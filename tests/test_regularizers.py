import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import regularizers as R
from jaxviz import transforms


def test_gaussian_kernel_sums_to_one_and_is_symmetric():
  for sigma in (0.5, 1.0, 2.3):
    k = R.gaussian_kernel(sigma)
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(k, k[::-1])
    assert np.argmax(k) == len(k) // 2


def test_blur_keeps_a_constant_image_constant():
  image = jnp.full((7, 9, 3), 0.37)
  np.testing.assert_allclose(R.blur(image, 1.5), image, atol=1e-6)


def test_blur_spreads_a_point_by_the_kernel():
  image = jnp.zeros((9, 9, 1)).at[4, 4, 0].set(1.0)
  k = R.gaussian_kernel(1.0)  # radius 3
  out = np.asarray(R.blur(image, 1.0))[..., 0]
  np.testing.assert_allclose(out[1:8, 1:8], np.outer(k, k), atol=1e-6)
  assert out.sum() == pytest.approx(1.0, abs=1e-5)


def test_decay_scales_every_pixel():
  np.testing.assert_allclose(R.decay(jnp.array([[[2.0, -4.0]]]), 0.25), [[[1.5, -3.0]]])


def test_clip_small_norm_zeroes_weak_pixels():
  # Pixel norms over 2 channels: 5, 1, 13, 0  → 50th percentile = 3.0.
  image = jnp.array([[[3.0, 4.0], [1.0, 0.0]], [[5.0, 12.0], [0.0, 0.0]]])
  out = np.asarray(R.clip_small_norm(image, 50.0))
  np.testing.assert_array_equal(out, [[[3, 4], [0, 0]], [[5, 12], [0, 0]]])


def test_clip_small_contribution_uses_image_times_grad():
  image = jnp.array([[[1.0], [2.0]], [[3.0], [4.0]]])
  grad = jnp.array([[[10.0], [0.1]], [[-1.0], [0.0]]])
  # |x·g| = 10, 0.2, 3, 0 → 50th percentile = 1.6: keep the first and third pixels.
  out = np.asarray(R.clip_small_contribution(image, grad, 50.0))
  np.testing.assert_array_equal(out[..., 0], [[1, 0], [3, 0]])


def test_total_variation_on_a_known_image():
  image = jnp.array([[0.0, 1.0], [2.0, 4.0]])[..., None]
  # down: |2-0|, |4-1| → mean 2.5; across: |1-0|, |4-2| → mean 1.5.
  assert float(R.total_variation(image)) == pytest.approx(4.0)
  assert float(R.total_variation(jnp.ones((5, 5, 3)))) == 0.0


def test_every_applies_on_period_with_static_and_traced_steps():
  double = lambda x: 2 * x
  x = jnp.ones(())
  assert [float(R.every(s, 3, double, x)) for s in range(6)] == [1, 1, 2, 1, 1, 2]
  traced = jax.jit(lambda s: R.every(s, 3, double, x))
  assert [float(traced(s)) for s in range(6)] == [1, 1, 2, 1, 1, 2]


def test_regularizers_off_are_the_identity():
  image = jax.random.normal(jax.random.key(0), (6, 6, 3))
  out = R.make_regularizer()(image, image, 0)
  np.testing.assert_array_equal(out, image)


def test_jitter_is_a_roll_with_a_per_key_shift():
  image = jnp.arange(36.0).reshape(6, 6, 1)
  shifted = [np.asarray(transforms.jitter(jax.random.key(i), image, 2)) for i in range(8)]
  for s in shifted:  # a roll permutes pixels
    np.testing.assert_array_equal(np.sort(s.ravel()), np.arange(36.0))
  assert len({s.tobytes() for s in shifted}) > 1
  np.testing.assert_array_equal(transforms.jitter(jax.random.key(0), image, 0), image)
