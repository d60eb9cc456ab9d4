import numpy as np

from jaxviz import gallery, render


def test_deprocess_follows_the_seed():
  x = np.array([[[0.0], [1.0]], [[2.0], [3.0]]])
  out = render.deprocess(x)
  # centered, std → 0.1, +0.5, ×255: mean pixel 127.5 and a spread of ±0.1342·255.
  expected = ((x - 1.5) / (np.std(x) + 1e-5) * 0.1 + 0.5) * 255
  np.testing.assert_array_equal(out, expected.astype(np.uint8))
  assert out.dtype == np.uint8


def test_deprocess_clips():
  x = np.zeros((10, 10, 3))
  x[0, 0] = 1000.0
  out = render.deprocess(x)
  # Mean 10 and std √(1000² · 3/300 − 10²) = √9900 ≈ 99.5: the bright pixel lands at
  # 0.5 + 0.1 · 990/99.5 ≈ 1.495, clipped to 1 → 255; every other one at
  # 0.5 − 0.1 · 10/99.5 ≈ 0.48995 → 124.9 → 124.
  expected = np.full((10, 10, 3), 124, np.uint8)
  expected[0, 0] = 255
  np.testing.assert_array_equal(out, expected)


def test_rank_orders_live_filters_and_marks_dead_ones():
  ranks, dead = gallery.rank(np.array([0.5, -1.0, 3.0, 0.0, np.nan, 1.0]))
  assert dead.tolist() == [False, True, False, True, True, False]
  assert ranks.tolist() == [2, -1, 0, -1, -1, 1]


def test_grid_shape():
  assert render.grid_shape(50) == (7, 8)  # n = 8 columns; the empty eighth row is left out
  assert render.grid_shape(36) == (6, 6)
  assert render.grid_shape(37) == (6, 7)
  assert render.grid_shape(1) == (1, 1)


def test_stitch_places_tiles_row_by_row_with_margins():
  tiles = np.stack([np.full((2, 3, 1), 10 * (i + 1), np.uint8) for i in range(5)])
  out = render.stitch(tiles, margin=1)
  rows, cols = render.grid_shape(5)  # (2, 3)
  assert out.shape == (rows * 2 + 1, cols * 3 + 2, 1)
  for i in range(5):
    r, c = divmod(i, cols)
    np.testing.assert_array_equal(out[r * 3:r * 3 + 2, c * 4:c * 4 + 3], 10 * (i + 1))
  assert np.all(out[2, :] == 0) and np.all(out[:, 3] == 0)  # the margins are black
  assert np.all(out[3:, 8:] == 0)  # the sixth cell is empty


def test_render_leaves_out_dead_filters_in_rank_order():
  display = np.stack([np.eye(4)[..., None] * (i + 1) + i for i in range(4)])
  records = gallery.filter_records(np.array([7, 8, 9, 10]), np.array([0.2, -0.1, 0.9, 0.5]))
  assert [r["rank"] for r in records] == [2, None, 0, 1]
  assert [r["dead"] for r in records] == [False, True, False, False]
  picture = gallery.picture(display, records, margin=2)
  tiles = [picture[0:4, 0:4], picture[0:4, 6:10], picture[6:10, 0:4]]
  expected = [render.deprocess(display[i]) for i in (2, 3, 0)]
  for tile, want in zip(tiles, expected):
    np.testing.assert_array_equal(tile, want)
  assert picture.shape == (10, 10, 1)
  assert gallery.picture(display, records, margin=2, max_tiles=1).shape == (4, 4, 1)


def test_labels_are_drawn_on_tiles():
  display = np.zeros((2, 20, 20, 1)) + np.arange(2)[:, None, None, None]
  records = gallery.filter_records(np.array([3, 4]), np.array([1.0, 2.0]))
  plain = gallery.picture(display, records)
  labelled = gallery.picture(display, records, labels=True)
  assert plain.shape == labelled.shape and not np.array_equal(plain, labelled)


def test_png_roundtrip():
  from PIL import Image
  import io
  grid = (np.arange(24, dtype=np.uint8).reshape(2, 4, 3))
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(render.png_bytes(grid)))), grid)
