import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import regularizers as R


def test_blur_keeps_a_constant_image_constant():
  image = jnp.full((7, 9, 3), 0.37)
  np.testing.assert_allclose(R.blur(image, 1.5), image, atol=1e-6)


def test_blur_spreads_a_point_as_a_gaussian():
  image = jnp.zeros((33, 33, 1)).at[16, 16, 0].set(1.0)
  for sigma in (1.0, 2.0):
    out = np.asarray(R.blur(image, sigma))[..., 0]
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(out, out.T, atol=1e-7)
    np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-7)
    t = np.arange(33) - 16
    variance = np.sum(out.sum(axis=1) * t ** 2)
    assert variance == pytest.approx(sigma ** 2, rel=0.02)
    row = out[16] / out[16, 16]
    np.testing.assert_allclose(row[15:18], np.exp(-0.5 * (t[15:18] / sigma) ** 2), rtol=0.02)


def test_blur_takes_a_traced_sigma_of_any_size():
  image = jax.random.normal(jax.random.key(1), (8, 8, 2))
  run = jax.jit(R.blur)
  np.testing.assert_allclose(run(image, 0.0), image, atol=1e-5)
  flat = np.asarray(run(image, 1e6))  # a huge blur is the mean, not a hang
  np.testing.assert_allclose(flat, np.broadcast_to(np.asarray(image).mean((0, 1)), flat.shape),
                             atol=1e-5)
  assert run._cache_size() == 1


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
  out = R.make_regularizer()(image, image, 0, {})
  np.testing.assert_array_equal(out, image)


def test_regularizer_strengths_come_from_hp():
  image = jnp.full((4, 4, 1), 2.0)
  regularize = R.make_regularizer(decay_on=True)
  np.testing.assert_allclose(regularize(image, image, 0, {"decay": jnp.float32(0.5)}), 1.0)
  np.testing.assert_allclose(regularize(image, image, 0, {"decay": jnp.float32(0.25)}), 1.5)


def test_penalties_on_a_known_image():
  image = jnp.array([[3.0, -4.0]])[..., None]
  assert float(R.l1(image)) == pytest.approx(3.5)
  assert float(R.l2(image)) == pytest.approx(np.sqrt(12.5))
