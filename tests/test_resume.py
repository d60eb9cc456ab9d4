"""Runs that resume: a killed run, rerun, ends identical to an uninterrupted one; a rerun with
another config is refused; the run state survives only whole files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from jaxviz.engine import FilterResult
from jaxviz.errors import JaxvizError
from jaxviz.resume import CRASH_AFTER_CHUNKS_ENV, RunState, config_differences, plan_chunks

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("images.npy", "activations.npy", "filters.json", "gallery.png", "config.json")
# Two layers of 2 chunks each (the second short and padded); the crash comes in conv2d_2.
JOB = ["--config.layer=conv", "--config.filters=0-6", "--config.chunk_size=4",
       "--config.steps=2"]


def environment(tmp: Path, **extra: str) -> dict:
  env = dict(os.environ, JAXVIZ_CACHE=str(tmp / "cache"), JAX_PLATFORMS="cpu", XLA_FLAGS="",
             PYTHONPATH=str(REPO), **extra)
  if CRASH_AFTER_CHUNKS_ENV not in extra:
    env.pop(CRASH_AFTER_CHUNKS_ENV, None)
  return env


def gallery(workdir: Path, weights: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
  command = [sys.executable, "-m", "jaxviz.cli", "gallery", "--workdir", str(workdir),
             f"--config.weights={weights}", *JOB, *extra]
  return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def write_weights(path: Path) -> Path:
  code = ("import jax, sys; from jaxviz import checkpoint; from jaxviz.models import get_spec; "
          "s = get_spec('lenet'); checkpoint.save(sys.argv[1], 'lenet', "
          "s.init_params(jax.random.key(5)), {})")
  subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                 env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO)))
  return path


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
  weights = write_weights(tmp_path / "lenet.msgpack")
  whole = gallery(tmp_path / "whole", weights, environment(tmp_path))
  assert whole.returncode == 0, whole.stderr

  # The run kills itself (SIGKILL) right after saving its 3rd chunk: conv2d_1's 2, conv2d_2's 1.
  work = tmp_path / "work"
  crashed = gallery(work, weights, environment(tmp_path, **{CRASH_AFTER_CHUNKS_ENV: "3"}))
  assert crashed.returncode == -9, crashed.stderr
  assert (work / "conv2d_1" / "filters.json").exists()
  assert not (work / "conv2d_2").exists()
  assert sorted(p.name for p in (work / ".jaxviz" / "conv2d_2").glob("chunk-*")) == [
      "chunk-00000.npz"]

  resumed = gallery(work, weights, environment(tmp_path))
  assert resumed.returncode == 0, resumed.stderr
  log = resumed.stderr
  assert "conv2d_1 (1/2): already done" in log
  assert "conv2d_2 (2/2): resuming: 1/2 chunks already done, computing 1" in log
  assert re.findall(r"conv2d_2 \(2/2\): chunk (\d)/2 done", log) == ["2"]
  for layer in ("conv2d_1", "conv2d_2"):
    for name in OUTPUTS:
      assert (work / layer / name).read_bytes() == (tmp_path / "whole" / layer / name).read_bytes()
  assert not list((work / ".jaxviz").glob("*/chunk-*"))  # chunk files go once a layer is done

  # The same command again computes nothing; another config is refused and changes nothing.
  again = gallery(work, weights, environment(tmp_path))
  assert again.returncode == 0 and "chunk" not in again.stderr
  before = (work / "conv2d_2" / "images.npy").read_bytes()
  other = gallery(work, weights, environment(tmp_path), "--config.steps=3", "--config.seed=4")
  assert other.returncode == 2
  assert "different config" in other.stderr
  assert "seed: 0 → 4" in other.stderr and "steps: 2 → 3" in other.stderr
  assert "another --workdir" in other.stderr
  assert (work / "conv2d_2" / "images.npy").read_bytes() == before


# --- the run state, in process -------------------------------------------------------------------

def config(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict({"model": "lenet", "layer": "conv2d_2", "steps": 20,
                                 "filters": "all", "nested": {"a": 1}})
  c.update(overrides)
  return c


def chunk_result(filters, height=2) -> FilterResult:
  n = len(filters)
  return FilterResult(np.asarray(filters), np.full((n, height, height, 1), 0.5, np.float32),
                      np.ones((n, 3), np.float32))


def test_manifest_refuses_another_config_or_other_weights(tmp_path):
  state = RunState(tmp_path)
  assert state.check_config(config()) is False
  assert state.start(config(), "aaa") == "new"
  assert state.check_config(config()) is True
  assert state.start(config(), "aaa") == "resumed"
  with pytest.raises(JaxvizError, match=r"steps: 20 → 5.*another --workdir"):
    state.check_config(config(steps=5))
  with pytest.raises(JaxvizError, match="weights differ"):
    state.start(config(), "bbb")
  (tmp_path / ".jaxviz" / "run.json").write_text("{not json")
  with pytest.raises(JaxvizError, match="unreadable"):
    state.check_config(config())


def test_config_differences_names_nested_and_missing_keys():
  old = {"steps": 20, "nested": {"a": 1, "b": 2}, "gone": True}
  new = {"steps": 20, "nested": {"a": 1, "b": 3}, "added": "x"}
  assert config_differences(old, new) == [
      "added: '<absent>' → 'x'", "gone: True → '<absent>'", "nested.b: 2 → 3"]


def test_only_missing_or_broken_chunks_are_todo(tmp_path):
  state = RunState(tmp_path)
  filters = list(range(10))
  plan = state.begin_layer("conv2d_2", filters, 4, ["images.npy"])
  assert plan == {"done": False, "chunk_size": 4, "todo": [0, 1, 2]}
  chunks = plan_chunks(filters, 4)
  state.save_chunk("conv2d_2", 0, chunk_result(chunks[0]))
  state.save_chunk("conv2d_2", 2, chunk_result(chunks[2]))
  assert not list(state.layer_dir("conv2d_2").glob(".*"))  # no temporary files left
  # A rerun keeps the first run's chunk size, whatever it asks for now.
  assert state.begin_layer("conv2d_2", filters, 3, ["images.npy"])["todo"] == [1]
  state.chunk_path("conv2d_2", 2).write_bytes(b"truncated")  # e.g. written by other means
  plan = state.begin_layer("conv2d_2", filters, 4, ["images.npy"])
  assert plan == {"done": False, "chunk_size": 4, "todo": [1, 2]}
  assert not state.chunk_path("conv2d_2", 2).exists()


def test_layer_result_joins_chunks_and_finish_cleans_up(tmp_path):
  state = RunState(tmp_path)
  filters = [3, 1, 4, 1, 5]
  state.begin_layer("conv2d_1", filters, 2, ["images.npy"])
  for i, chunk in enumerate(plan_chunks(filters, 2)):
    state.save_chunk("conv2d_1", i, chunk_result(chunk))
  result = state.layer_result("conv2d_1", filters, 2)
  assert result.filters.tolist() == filters
  assert result.images.shape == (5, 2, 2, 1) and result.activations.shape == (5, 3)
  (tmp_path / "conv2d_1").mkdir()
  (tmp_path / "conv2d_1" / "images.npy").write_bytes(b"x")
  state.finish_layer("conv2d_1")
  assert not list(state.layer_dir("conv2d_1").glob("chunk-*"))
  assert state.begin_layer("conv2d_1", filters, 2, ["images.npy"])["done"] is True
  # Outputs deleted by hand: the layer is computed again.
  (tmp_path / "conv2d_1" / "images.npy").unlink()
  assert state.begin_layer("conv2d_1", filters, 2, ["images.npy"])["todo"] == [0, 1, 2]


def test_a_chunk_of_other_filters_is_not_reused(tmp_path):
  state = RunState(tmp_path)
  state.begin_layer("conv2d_1", [0, 1, 2, 3], 2, ["images.npy"])
  state.save_chunk("conv2d_1", 0, chunk_result([7, 8]))
  assert state.load_chunk("conv2d_1", 0, [0, 1]) is None
  manifest = {"filters": [0, 1, 2, 3], "chunk_size": 2}
  assert json.loads((state.layer_dir("conv2d_1") / "plan.json").read_text()) == manifest
