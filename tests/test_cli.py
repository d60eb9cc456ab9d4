"""The CLI end to end on tiny configs, and every bad input the gallery command must refuse."""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from jaxviz import cli


@pytest.fixture(scope="module")
def weights(tmp_path_factory, lenet_checkpoint):
  return lenet_checkpoint(tmp_path_factory.mktemp("weights"), seed=1)


pytestmark = pytest.mark.usefixtures("isolated_cache")  # each test with its own cache


def gallery(workdir, *overrides):
  return cli.main(["gallery", "--workdir", str(workdir), *overrides])


def test_gallery_end_to_end(tmp_path, weights, capsys):
  assert gallery(tmp_path, f"--config.weights={weights}", "--config.filters=0-5,9",
                 "--config.steps=3") == 0
  out = tmp_path / "conv2d_2"
  assert sorted(p.name for p in out.iterdir()) == sorted(
      ["gallery.png", "filters.json", "images.npy", "activations.npy", "config.json"])
  records = json.loads((out / "filters.json").read_text())
  assert [r["filter"] for r in records] == [0, 1, 2, 3, 4, 5, 9]
  assert set(records[0]) == {"filter", "activation", "robustness", "dead", "rank", "woken",
                             "preset"}
  live = [r for r in records if not r["dead"]]
  assert sorted(r["rank"] for r in live) == list(range(len(live)))
  assert {r["preset"] for r in records} == {"default"}
  assert all(isinstance(r["robustness"], float) for r in live)
  last = capsys.readouterr().out.strip().splitlines()[-1]
  assert last.startswith(f"conv2d_2: {len(live)}/7 live"), last
  images = np.load(out / "images.npy")
  assert images.shape == (7, 28, 28, 1) and images.dtype == np.float32
  from PIL import Image
  rows, cols = (len(live) + 2) // 3, 3  # 7 requested, ≤ 7 live: a 3-wide grid
  if len(live) > 4:
    assert Image.open(out / "gallery.png").size == (cols * 28 + (cols - 1) * 5,
                                                    rows * 28 + (rows - 1) * 5)
  staging = [p for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".jaxviz"]
  assert not staging  # only the resume state (.jaxviz) stays hidden in the workdir


def test_single_filter_equals_its_row_in_the_all_filter_run(tmp_path, weights):
  assert gallery(tmp_path / "all", f"--config.weights={weights}", "--config.steps=3") == 0
  assert gallery(tmp_path / "one", f"--config.weights={weights}", "--config.steps=3",
                 "--config.filters=13") == 0
  every = np.load(tmp_path / "all/conv2d_2/images.npy")
  one = np.load(tmp_path / "one/conv2d_2/images.npy")
  np.testing.assert_allclose(one[0], every[13], rtol=1e-5, atol=1e-5)


def test_layers_prints_a_summary(capsys):
  assert cli.main(["layers"]) == 0
  out = capsys.readouterr().out
  for name in ("conv2d_1", "activation_1", "max_pooling2d_1", "conv2d_2", "dense_1", "dense_2"):
    assert name in out
  assert "(None, 14, 14, 50)" in out and "25,050" in out and "Total params: 1,256,080" in out


@pytest.mark.parametrize("overrides, message", [
    (["--config.model=resnet"], "unknown model 'resnet'.*Valid: lenet"),
    (["--config.layer=conv2d_3"], "unknown layer.*'conv2d_3'.*conv2d_1, activation_1"),
    (["--config.filters=50"], "filter index 50 is out of range.*50 filters"),
    (["--config.steps=0"], "steps must be"),
    (["--config.size=-1"], "size must be"),
    (["--config.size=64"], "takes 28×28 inputs only"),
    (["--config.stepz=5"], "unknown config key 'stepz'. Did you mean 'steps'"),
    (["--config.steps=many"], "config key 'steps' takes a int"),
    (["--config.step_size=1e999"], "config key 'step_size' is inf; it must be a finite number"),
    (["--config.exclude_border=6"], "exclude_border=6 leaves nothing of the 12×12 activation "
     r"map of 'conv2d_2' \(the map of the steps' windows, crop=0.875\); use a value below 6"),
    (["--config.exclude_border=7", "--config.crop=1.0"], "exclude_border=7 leaves nothing of "
     "the 14×14 activation map of 'conv2d_2'; use a value below 7"),
    (["--config.weights=/nonexistent/lenet.msgpack"], "does not exist"),
    (["--bogus"], "unrecognized argument '--bogus'"),
    (["--config.margin=100000"], "margin must be 0–64 pixels, got 100000"),
    (["--config.optimizer=lbfgs"], "unknown optimizer 'lbfgs'"),
    (["--config.wake_passes=fourier,pixels"], "wake_passes must name each of pixel, fourier at "
     "most once, in the order the second pass tries them, e.g. 'fourier,pixel'; got "
     "'fourier,pixels'"),
    (["--config.seed=-1"], "seed must be a whole number in 0 … 4294967295, got -1"),
    (["--config.steps=100000000"], "steps must be in 1..100000"),
    (["--config.max_tiles=-1"], "max_tiles must be ≥ 0"),
    (["--config.filters=0-99999999999"], "filter index 99999999999 is out of range"),
    (["--config.model=vgg16", "--config.layer=block5_conv1", "--config.size=20000",
      "--config.chunk_size=1"], "1 image\\(s\\) of 20000×20000 px up to 'block5_conv1' need about "
     ".* MiB, over the memory budget .*: lower chunk_size or size"),
])
def test_bad_input_fails_cleanly(tmp_path, weights, capsys, overrides, message):
  workdir = tmp_path / "out"
  args = [f"--config.weights={weights}"] + overrides
  assert gallery(workdir, *args) == 2
  err = capsys.readouterr().err
  assert "error:" in err and "Traceback" not in err
  assert re.search(message, err), err
  assert not (workdir / "conv2d_2").exists()


def test_corrupt_checkpoint_is_refused(tmp_path, weights, capsys):
  corrupt = tmp_path / "corrupt.msgpack"
  corrupt.write_bytes(open(weights, "rb").read()[:1000])
  assert gallery(tmp_path / "out", f"--config.weights={corrupt}") == 2
  assert "not a readable jaxviz checkpoint" in capsys.readouterr().err
  assert not (tmp_path / "out" / "conv2d_2").exists()


def test_unwritable_workdir_is_refused(tmp_path, weights, capsys):
  blocker = tmp_path / "a-file"
  blocker.write_text("not a folder")
  assert gallery(blocker / "out", f"--config.weights={weights}") == 2
  assert "cannot write to workdir" in capsys.readouterr().err


def test_missing_default_weights_name_the_fix(tmp_path, capsys):
  assert cli.main(["gallery", "--workdir", str(tmp_path), "--config.dataset=nope"]) == 2
  assert "unknown dataset" in capsys.readouterr().err.lower()


def test_missing_workdir_is_refused(capsys):
  assert cli.main(["gallery"]) == 2
  assert "--workdir" in capsys.readouterr().err


CONFIG_HEAD = "import ml_collections\nfrom jaxviz.configs import lenet_conv2d_2\n\n"


@pytest.mark.parametrize("body, message", [
    ("def get_config():\n  c = lenet_conv2d_2.get_config()\n  c.steps = (3\n  return c\n",
     r"line 6, column 13: SyntaxError: '\(' was never closed: 'c.steps = \(3'"),
    ("def get_config():\n  c = lenet_conv2d_2.get_config()\n  c.steps = helper()\n  return c\n"
     "\n\ndef helper():\n  return 1 // 0\n",
     r"line 11: ZeroDivisionError: integer division or modulo by zero"),
    ("STEPS = int('many')\n", r"line 4: ValueError: invalid literal for int\(\)"),
    ("def get_config():\n  return {'steps': 3}\n",
     r"get_config\(\) returned a dict, not an ml_collections.ConfigDict"),
    ("def get_config():\n  c = lenet_conv2d_2.get_config()\n  c.step_size = float('nan')\n"
     "  return c\n", r"config key 'step_size' is nan; it must be a finite number"),
])
def test_config_file_errors_name_the_file_and_line(tmp_path, capsys, body, message):
  path = tmp_path / "mine.py"
  path.write_text(CONFIG_HEAD + body)
  assert cli.main(["gallery", "--workdir", str(tmp_path / "out"), "--config", str(path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"jaxviz gallery: error: config file {str(path)!r}"), err
  assert re.search(message, err), err
  assert "Traceback" not in err
  assert not (tmp_path / "out").exists()


def test_sigterm_stops_cleanly(tmp_path, weights):
  workdir = tmp_path / "out"
  proc = subprocess.Popen(
      [sys.executable, "-m", "jaxviz.cli", "gallery", "--workdir", str(workdir),
       f"--config.weights={weights}", "--config.steps=100000"],
      stderr=subprocess.PIPE, text=True,
      env={**os.environ, "JAXVIZ_CACHE": str(tmp_path / "cache")})
  lines = []
  for line in proc.stderr:
    lines.append(line)
    if "optimizing" in line:
      break
  proc.send_signal(signal.SIGTERM)
  err = "".join(lines) + proc.stderr.read()
  assert proc.wait(timeout=60) == 143, err
  assert "jaxviz gallery: stopped by SIGTERM; nothing half-written is left; rerun the same " \
      "command to resume" in err
  assert "Traceback" not in err
  assert not (workdir / "conv2d_2").exists()
