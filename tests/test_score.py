"""`jaxviz score`: images made elsewhere get the numbers a gallery gives its own."""

import json

import numpy as np
import pytest

from jaxviz import cli
from jaxviz.models import get_spec

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def weights(tmp_path_factory, lenet_checkpoint):
  return lenet_checkpoint(tmp_path_factory.mktemp("weights"), seed=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, weights):
  """A tiny default gallery: its folder, with filters.json and images.npy."""
  workdir = tmp_path_factory.mktemp("gallery")
  assert cli.main(["gallery", "--workdir", str(workdir), f"--config.weights={weights}",
                   "--config.filters=0-4", "--config.steps=4", "--config.wake=False"]) == 0
  return workdir / "conv2d_2"


def score(capsys, source, *overrides):
  code = cli.main(["score", str(source), "--json", *overrides])
  captured = capsys.readouterr()
  return code, (json.loads(captured.out) if code == 0 else None), captured.err


def test_a_gallery_s_own_images_score_as_its_filters_json(tmp_path, weights, finished, capsys):
  spec = get_spec("lenet")
  pixels = np.asarray(spec.input_to_pixels(np.load(finished / "images.npy")))
  np.save(tmp_path / "pixels.npy", pixels)
  code, records, err = score(capsys, tmp_path / "pixels.npy", f"--config.weights={weights}",
                             "--config.filters=0-4")
  assert code == 0, err
  expected = json.loads((finished / "filters.json").read_text())
  assert [r["filter"] for r in records] == [0, 1, 2, 3, 4]
  assert any(not r["dead"] for r in expected)
  for got, want in zip(records, expected):
    assert got["dead"] == want["dead"] and got["rank"] == want["rank"]
    np.testing.assert_allclose(got["activation"], want["activation"], rtol=1e-4, atol=1e-6)
    if not want["dead"]:
      np.testing.assert_allclose(got["robustness"], want["robustness"], rtol=1e-3)


def test_a_black_image_scores_its_hand_computed_activation(tmp_path, capsys):
  """A black image (LeNet's neutral input 0) passes only the biases: conv2d_1's map is
  relu(b1) everywhere, and so is its pooled map; conv2d_2's map at each position is the sum of
  its kernel taps that fall inside the 14×14 map ('same' padding reads zeros outside) times
  relu(b1), plus b2. Every held-out transform leaves a black image black, so robustness is
  exactly 1 where the filter fires."""
  import jax

  from jaxviz import checkpoint
  spec = get_spec("lenet")
  params = jax.tree_util.tree_map(np.asarray, spec.init_params(jax.random.key(3)))
  rng = np.random.default_rng(0)
  b1 = rng.normal(0.0, 0.5, params["conv2d_1"]["bias"].shape).astype(np.float32)
  b2 = rng.normal(0.0, 0.5, params["conv2d_2"]["bias"].shape).astype(np.float32)
  params["conv2d_1"]["bias"], params["conv2d_2"]["bias"] = b1, b2
  weights = checkpoint.save(tmp_path / "biased.msgpack", "lenet", params, {"note": "test"})
  k2 = params["conv2d_2"]["kernel"]               # [5, 5, 20, 50]
  size, half = 14, k2.shape[0] // 2
  inside = np.zeros((size, size, k2.shape[0], k2.shape[1]))
  for i in range(size):
    for j in range(size):
      for di in range(k2.shape[0]):
        for dj in range(k2.shape[1]):
          if 0 <= i + di - half < size and 0 <= j + dj - half < size:
            inside[i, j, di, dj] = 1.0
  pre = np.einsum("ijab,abcf,c->ijf", inside, k2, np.maximum(b1, 0)) + b2
  expected = np.maximum(pre, 0).mean(axis=(0, 1))  # [50]
  assert 0 < np.sum(expected > 0) < 50             # some filters fire, some stay dark
  np.save(tmp_path / "black.npy", np.zeros((50, 28, 28), np.float32))
  code, records, err = score(capsys, tmp_path / "black.npy", f"--config.weights={weights}",
                             "--config.filters=all")
  assert code == 0, err
  np.testing.assert_allclose([r["activation"] for r in records], expected, rtol=1e-4, atol=1e-6)
  for r in records:
    assert r["dead"] == (r["activation"] <= 0)
    if not r["dead"]:
      assert r["robustness"] == pytest.approx(1.0, abs=1e-5)


def test_png_files_are_read_and_the_summary_line_printed(tmp_path, weights, capsys):
  from PIL import Image
  for name, value in (("a.png", 0), ("b.png", 200)):
    Image.fromarray(np.full((28, 28), value, np.uint8)).save(tmp_path / name)
  assert cli.main(["score", f"{tmp_path / 'a.png'},{tmp_path / 'b.png'}",
                   f"--config.weights={weights}", "--config.filters=3,4"]) == 0
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0].startswith("filter 3: activation ") and lines[1].startswith("filter 4: ")
  assert lines[-1].split(",")[0].endswith("/2 live")


@pytest.mark.parametrize("array, overrides, message", [
    (np.zeros((2, 28, 28)), ["--config.filters=0-2"], "2 images for 3 filters"),
    (np.zeros((2, 32, 32)), ["--config.filters=0-1"], "expected pixels [N, 28, 28, 1]"),
    (np.full((1, 28, 28), 2.0 * 255), ["--config.filters=0"], "multiply images in [0, 1] by 255"),
    (np.zeros((1, 28, 28)), ["--config.filters=50"], "filter"),
    (np.zeros((1, 28, 28)), ["--config.filters=0", "--config.layer=conv2d_1,conv2d_2"],
     "one layer at a time"),
])
def test_bad_input_is_refused_with_the_fix(tmp_path, weights, capsys, array, overrides, message):
  np.save(tmp_path / "x.npy", array.astype(np.float32))
  code, _, err = score(capsys, tmp_path / "x.npy", f"--config.weights={weights}", *overrides)
  assert code == 2 and message in err, err


def test_a_missing_file_is_named(tmp_path, weights, capsys):
  code, _, err = score(capsys, tmp_path / "nope.npy", f"--config.weights={weights}")
  assert code == 2 and "nope.npy" in err


def test_robustness_parts_recomputes_the_reported_robustness_for_a_gallery_or_its_pixels(
    tmp_path, finished, capsys, monkeypatch):
  """`scripts/robustness_parts.py`'s "all three" is filters.json's robustness, and the gallery's
  own images given as another tool's pixels (`--pixels`) get the same row."""
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "robustness_parts.py"
  module_spec = importlib.util.spec_from_file_location("robustness_parts", path)
  parts = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(parts)

  def table(*argv):
    monkeypatch.setattr("sys.argv", ["robustness_parts.py", str(finished), *argv])
    assert parts.main() == 0
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines()]
    return {row[0].strip(): [cell.strip() for cell in row[1:]] for row in rows[2:]}

  pixels = np.asarray(get_spec("lenet").input_to_pixels(np.load(finished / "images.npy")))
  np.save(tmp_path / "pixels.npy", pixels)
  own, other = table(), table("--pixels", str(tmp_path / "pixels.npy"))
  live = [str(r["filter"]) for r in json.loads((finished / "filters.json").read_text())
          if not r["dead"]]
  assert sorted(own) == sorted(live + ["median"]) and sorted(other) == sorted(own)
  for name in live:
    activation, reported, all_three, *rest = own[name]
    assert all_three == reported and float(all_three) > 0
    assert other[name][1] == "–" and other[name][2:] == own[name][2:]
    assert other[name][0] == activation
