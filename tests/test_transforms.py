import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxviz import transforms as T


def hp(**values):
  base = {"jitter": 0.0, "scale": 0.0, "rotate": 0.0, "frame": 0.0}
  base.update(values)
  return {k: jnp.float32(v) for k, v in base.items()}


def test_identity_affine_returns_the_image():
  image = jax.random.normal(jax.random.key(0), (7, 9, 3))
  np.testing.assert_allclose(T.sample_affine(image, jnp.eye(3)), image, atol=1e-6)


def test_jitter_shifts_by_whole_pixels_and_fills_with_zero():
  image = jnp.arange(1.0, 37.0).reshape(6, 6, 1)
  chain = T.compose([T.jitter()])
  seen = set()
  for i in range(20):
    out = np.asarray(chain(jax.random.key(i), image, hp(jitter=0.34)))[..., 0]  # up to 2 pixels
    # Each output pixel is an input pixel or 0 (moved in from outside).
    assert set(out.ravel()) <= set(np.arange(1.0, 37.0)) | {0.0}
    nonzero = out[out != 0]
    assert np.all(np.diff(nonzero.reshape(-1)) != 0)
    seen.add(out.tobytes())
  assert len(seen) > 5
  out = np.asarray(chain(jax.random.key(0), image, hp(jitter=0.0)))
  np.testing.assert_array_equal(out, image)


def test_rotation_by_ninety_degrees_turns_the_image():
  image = jax.random.normal(jax.random.key(1), (5, 5, 2))
  c, s = 0.0, 1.0
  m = jnp.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])
  out = T.sample_affine(image, m)
  np.testing.assert_allclose(out, np.rot90(np.asarray(image), k=1, axes=(0, 1)), atol=1e-5)


def test_zoom_by_two_enlarges_the_centre():
  image = jnp.zeros((5, 5, 1)).at[2, 2, 0].set(1.0)
  out = np.asarray(T.sample_affine(image, jnp.diag(jnp.array([0.5, 0.5, 1.0]))))[..., 0]
  # Output pixel p reads input p / 2: the centre stays 1, its neighbours read halfway (0.5).
  assert out[2, 2] == pytest.approx(1.0)
  assert out[2, 3] == pytest.approx(0.5) and out[1, 2] == pytest.approx(0.5)
  assert out[2, 4] == pytest.approx(0.0)


def test_pad_adds_a_neutral_border():
  image = jnp.ones((10, 10, 1))
  out = T.compose([T.pad(0.2)])(jax.random.key(0), image, hp())
  assert out.shape == (14, 14, 1)
  assert float(out[0].sum()) == 0 and float(out[2:12, 2:12].min()) == 1


def test_frame_shrinks_the_image_into_a_neutral_border_at_the_same_size():
  image = jnp.ones((5, 5, 1))
  chain = T.compose([T.frame()])
  out = np.asarray(chain(jax.random.key(0), image, hp(frame=0.25)))[..., 0]
  # Output pixel p (centred) reads input 1.5 p: the ring at ±2 reads ±3, past the edge (the
  # neutral 0); the centre 3 × 3 reads inside the image.
  expected = np.zeros((5, 5))
  expected[1:4, 1:4] = 1.0
  np.testing.assert_allclose(out, expected, atol=1e-6)
  np.testing.assert_array_equal(chain(jax.random.key(0), image, hp(frame=0.0)), image)


def test_frame_comes_after_the_random_transforms_and_leaves_their_draws_alone():
  image = jax.random.uniform(jax.random.key(6), (12, 12, 3))
  values = hp(jitter=0.2, scale=0.1, rotate=10.0)
  without = T.compose(T.make(0.0, True, True, True))(jax.random.key(7), image, values)
  framed = T.compose(T.make(0.0, True, True, True, frame_on=True))
  assert [t.name for t in T.make(0.0, True, True, True, frame_on=True)][-1] == "frame"
  np.testing.assert_allclose(framed(jax.random.key(7), image, values), without, atol=1e-5)
  assert not np.allclose(framed(jax.random.key(7), image, {**values, "frame": 0.1}), without)


def test_crop_is_a_window_of_the_image_at_a_random_place():
  image = jnp.arange(8 * 8 * 2, dtype=jnp.float32).reshape(8, 8, 2)
  corners = set()
  for seed in range(40):
    out = T.compose([T.crop(0.75)])(jax.random.key(seed), image, hp())
    assert out.shape == (6, 6, 2)
    row, col = divmod(int(out[0, 0, 0]) // 2, 8)  # the window's first pixel says where it is
    np.testing.assert_array_equal(out, image[row:row + 6, col:col + 6])
    corners.add((row, col))
  assert corners == {(r, c) for r in range(3) for c in range(3)}  # every position, and only those
  assert T.make(crop_fraction=1.0) == []


def test_crop_first_cuts_the_window_before_the_shift_moves_it():
  image = jax.random.uniform(jax.random.key(8), (6, 6, 2))
  values = hp(jitter=0.25)  # a limit of one pixel on the window's side of 4
  first = T.make(jitter_on=True, crop_fraction=4 / 6, crop_first=True)
  last = T.make(jitter_on=True, crop_fraction=4 / 6)
  assert [t.name for t in first] == ["crop", "jitter"]
  assert [t.name for t in last] == ["jitter", "crop"]
  moved = 0
  for seed in range(12):
    key = jax.random.key(seed)
    window_key, shift_key = jax.random.split(key, 2)  # compose's draws, in the chain's order
    window = T.crop(4 / 6).apply(window_key, image, values)
    expected = T.sample_affine(window, T.jitter().affine(shift_key, values, (4, 4)))
    out = T.compose(first)(key, image, values)
    assert out.shape == (4, 4, 2)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    moved += not np.allclose(out, window)
  assert moved > 0  # some draws shift the window's content (and bring the neutral 0 in)


def test_affine_chain_is_sampled_once_and_ranges_are_traced():
  image = jax.random.uniform(jax.random.key(2), (16, 16, 3))
  chain = T.compose(T.make(0.0, True, True, True))
  run = jax.jit(chain)
  a = run(jax.random.key(3), image, hp(jitter=0.1, scale=0.1, rotate=10.0))
  b = run(jax.random.key(3), image, hp(jitter=0.1, scale=0.1, rotate=10.0))
  np.testing.assert_array_equal(a, b)
  c = run(jax.random.key(3), image, hp(jitter=0.0, scale=0.0, rotate=0.0))  # no new compile
  np.testing.assert_allclose(c, image, atol=1e-5)
  assert run._cache_size() == 1


def test_gradients_flow_back_through_transforms():
  image = jnp.ones((8, 8, 1))
  chain = T.compose(T.make(0.0, True, True, True))
  g = jax.grad(lambda x: jnp.sum(chain(jax.random.key(4), x, hp(jitter=0.1, scale=0.1,
                                                                 rotate=5.0))))(image)
  assert float(jnp.sum(g)) > 30


def test_robustness_transform_is_fixed_for_a_key():
  held_out = T.robustness_transform()
  image = jax.random.uniform(jax.random.key(5), (12, 12, 3))
  np.testing.assert_array_equal(held_out(jax.random.key(1), image),
                                held_out(jax.random.key(1), image))
  assert not np.allclose(held_out(jax.random.key(1), image), image)
