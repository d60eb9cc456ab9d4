"""`jaxviz sweep`: one compiled program for a grid of settings, rows equal to single runs, its
outputs, best.py as a gallery config, and every bad input refused before anything is written."""

import dataclasses
import json
import re

import jax
import numpy as np
import pytest

from jaxviz import cli
from jaxviz.config import load_config
from jaxviz.jobs import sweep
from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.models import Model, get_spec

FAST = ["--config.steps=4", "--config.filters=0-2", "--config.robustness_samples=2"]


@pytest.fixture(scope="module")
def lenet():
  spec = get_spec("lenet")
  return Model(spec, spec.init_params(jax.random.key(0)))


@pytest.fixture(scope="module")
def weights(tmp_path_factory, lenet_checkpoint):
  return lenet_checkpoint(tmp_path_factory.mktemp("weights"), seed=1)


pytestmark = pytest.mark.usefixtures("isolated_cache")  # each test with its own cache


def seed_config(**fields):
  config = load_config("seed")
  for key, value in dict(steps=4, filters="0-2", robustness_samples=2, **fields).items():
    config[key] = value
  return config


def test_grid_compiles_once_and_each_row_equals_a_single_run(lenet):
  # Pixels with a zoom always on: jitter at 0 must leave the zoom's random draws as they are.
  grid = {"decay": [0.0, 0.05], "jitter": [0.0, 0.1], "blur_sigma": [0.0, 0.7]}
  plan = sweep.plan_sweep(seed_config(scale=0.1, blur_every=2), grid)
  assert len(plan.settings) == 8 and plan.points[1] == {"decay": 0.0, "jitter": 0.0,
                                                        "blur_sigma": 0.7}
  engine = FilterEngine(lenet, "conv2d_2", plan.engine_settings)
  rows = engine.run_settings(plan.settings, "0-2", chunk_size=5)  # 24 items: 5 chunks, padded
  assert engine.traces == 1
  for s in (0, 3, 6):
    alone = FilterEngine(lenet, "conv2d_2", plan.settings[s]).run("0-2")
    np.testing.assert_allclose(rows[s].images, alone.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows[s].activations, alone.activations, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(rows[s].robustness, alone.robustness, rtol=1e-5)
  other = sweep.plan_sweep(seed_config(scale=0.1, blur_every=2),
                           {"decay": [0.01, 0.2], "jitter": [0.05, 0.02], "blur_sigma": [1.0, 0.3]})
  again = engine.run_settings(other.settings, "0-2", chunk_size=5)
  assert engine.traces == 1  # other values, the same program
  assert not np.allclose(again[0].images, rows[0].images)


def test_every_piece_switched_on_at_zero_is_off(lenet):
  plain = AscentSettings(steps=3, scale=0.1, robustness_samples=2)
  on = dataclasses.replace(plain, jitter=0.1, rotate=10.0, decay=0.1, blur_sigma=0.5,
                           blur_every=1, clip_norm_percentile=10.0,
                           clip_contribution_percentile=10.0, l1_weight=0.5, l2_weight=0.5,
                           tv_weight=0.5)
  zero = dataclasses.replace(plain, blur_every=1)  # blur_every is fixed, only used when on
  expected = FilterEngine(lenet, "conv2d_2", zero).run("0-3")
  got = FilterEngine(lenet, "conv2d_2", on).run("0-3", settings=zero)
  np.testing.assert_allclose(got.images, expected.images, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got.activations, expected.activations, rtol=1e-5)


def test_sweep_end_to_end_and_best_py_runs_as_a_gallery(tmp_path, weights, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert cli.main(["sweep", "--workdir", "s", "--config", "seed", f"--config.weights={weights}",
                   *FAST, "--sweep.decay=0,0.05", "--sweep.tv_weight", "0,0.5"]) == 0
  out = tmp_path / "s"
  assert sorted(p.name for p in out.iterdir()) == sorted(sweep.OUTPUT_FILES)
  # No staging left; the lock file beside WORKDIR stays (unlinking a lock file races).
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [".s.lock"]
  summary = json.loads((out / "sweep.json").read_text())
  assert summary["keys"] == ["decay", "tv_weight"]
  assert [s["values"] for s in summary["settings"]] == [
      {"decay": 0.0, "tv_weight": 0.0}, {"decay": 0.0, "tv_weight": 0.5},
      {"decay": 0.05, "tv_weight": 0.0}, {"decay": 0.05, "tv_weight": 0.5}]
  for entry in summary["settings"]:
    assert set(entry) == {"values", "live", "woken", "count", "median_activation",
                          "median_robustness", "filters"}
    assert [r["filter"] for r in entry["filters"]] == [0, 1, 2]
    assert entry["live"] == sum(not r["dead"] for r in entry["filters"])
  best = summary["settings"][summary["best"]]
  assert summary["best"] == sweep.best_index(summary["settings"])
  images = np.load(out / "images.npy")
  assert images.shape == (4, 3, 28, 28, 1)
  from PIL import Image
  width, height = Image.open(out / "sweep.png").size
  assert width > 3 * 28 + 2 * 5 and height > 4 * 28 + 3 * 5  # tiles plus labels and headers
  lines = capsys.readouterr().out.strip().splitlines()
  assert lines[0] == str(out)
  assert lines[-1].startswith(f"best: {sweep.describe(best['values'])}: {best['live']}/3 live")

  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  monkeypatch.chdir(elsewhere)  # best.py works from any folder
  config = load_config(str(out / "best.py"))
  assert (config.decay, config.tv_weight) == (best["values"]["decay"],
                                              best["values"]["tv_weight"])
  assert (config.preset, config.steps, config.filters) == ("seed", 4, "0-2")
  assert cli.main(["gallery", "--workdir", "g", "--config", str(out / "best.py")]) == 0
  gallery_images = np.load(elsewhere / "g/conv2d_2/images.npy")
  np.testing.assert_allclose(gallery_images, images[summary["best"]], rtol=1e-5, atol=1e-6)


def test_best_rule():
  entry = lambda live, robust, act: {"live": live, "median_robustness": robust,
                                     "median_activation": act}
  assert sweep.best_index([entry(2, 0.9, 5.0), entry(3, 0.1, 1.0)]) == 1  # live first
  assert sweep.best_index([entry(3, 0.8, 9.0), entry(3, 0.9, 1.0)]) == 1  # then robustness
  assert sweep.best_index([entry(3, 0.9, 1.0), entry(3, 0.9, 2.0)]) == 1  # then activation
  assert sweep.best_index([entry(0, None, None), entry(0, None, None)]) == 0  # ties: first


@pytest.mark.parametrize("args, match", [
    (["--sweep.decy=0,0.1"], r"unknown sweep key 'decy'\. Did you mean 'decay'\? Valid: step_size"),
    (["--sweep.steps=2,4"], r"steps cannot be swept.*Only these keys can be swept: step_size, "),
    (["--sweep.decay="], r"--sweep.decay has no values"),
    (["--sweep.decay=0,abc"], r"'abc' is not a number"),
    (["--sweep.decay=0,nan"], r"'nan' is not a finite number"),
    (["--sweep.jitter=0,inf"], r"'inf' is not a finite number"),
    (["--sweep.decay=0,1.5"], r"sweep setting decay=1\.5: decay must be in \[0, 1\)"),
    (["--sweep.step_size=0,1"], r"sweep setting step_size=0: step_size must be > 0"),
    (["--sweep.decay=0", "--sweep.decay=0.1"], r"--sweep.decay is given twice"),
    (["--sweep.decay=0,0.1,0"], r"'0' is repeated"),
    ([f"--sweep.decay={','.join(str(i / 100) for i in range(17))}",
      f"--sweep.rotate={','.join(str(i) for i in range(16))}"],
     r"the grid has 272 settings \(17 × 16\); a sweep takes at most 256"),
    ([], r"nothing to sweep"),
    (["--config.layer=conv", "--sweep.decay=0,0.1"], r"a sweep is of one layer"),
    (["--config", "default", "--sweep.blur_sigma=0,0.5"],
     r"sweep setting blur_sigma=0\.5: blur_sigma: these regularizers act on pixel variables"),
    (["--sweep.diversity_weight=0,1"], r"diversity_weight acts only with several images"),
    (["--sweep.decay=0,0.1", "--config.stepz=3"], r"unknown config key 'stepz'"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, capsys, args, match):
  workdir = tmp_path / "s"
  assert cli.main(["sweep", "--workdir", str(workdir), *args]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith("jaxviz sweep: error: "), err
  assert re.search(match, err), err
  assert list(tmp_path.iterdir()) == []


def test_a_workdir_with_other_files_is_refused(tmp_path, capsys):
  (tmp_path / "notes.txt").write_text("mine")
  assert cli.main(["sweep", "--workdir", str(tmp_path), "--sweep.decay=0,0.1"]) == 2
  assert "holds other files (notes.txt)" in capsys.readouterr().err
  assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_second_sweep_on_the_same_workdir_is_refused(tmp_path, weights, capsys):
  from jaxviz.resume import hold_lock
  workdir = tmp_path / "s"
  held = hold_lock(tmp_path / ".s.lock", workdir, False, print)
  try:
    assert cli.main(["sweep", "--workdir", str(workdir), f"--config.weights={weights}", *FAST,
                     "--sweep.step_size=0.5,1"]) == 2
  finally:
    held.close()
  err = capsys.readouterr().err
  assert f"workdir {str(workdir)!r} is in use by" in err and "Traceback" not in err
  assert not workdir.exists()
