"""Runs that resume: a killed run, rerun, ends identical to an uninterrupted one; a rerun with
another config is refused; damaged run state is reported and recomputed, never trusted; one run
at a time uses a workdir."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from jaxviz import cli, distributed
from jaxviz.engine import FilterResult
from jaxviz.errors import JaxvizError
from jaxviz.chunking import split as plan_chunks
from jaxviz.resume import RunState, chunk_bytes, config_differences

REPO = Path(__file__).resolve().parents[1]
CRASH_AFTER_CHUNKS = Path(__file__).with_name("crash_after_chunks.py")
OUTPUTS = ("images.npy", "activations.npy", "filters.json", "gallery.png", "config.json")
# Two layers of 2 chunks each (the second short and padded); the crash comes in conv2d_2.
JOB = ["--config.layer=conv", "--config.filters=0-6", "--config.chunk_size=4",
       "--config.steps=2"]


def environment(tmp: Path) -> dict:
  return dict(os.environ, JAXVIZ_CACHE=str(tmp / "cache"), JAX_PLATFORMS="cpu", XLA_FLAGS="",
              PYTHONPATH=str(REPO))


def gallery(workdir: Path, weights: Path, env: dict, *extra: str, job=JOB,
            crash_after: int = 0) -> subprocess.CompletedProcess:
  """`jaxviz gallery` in a subprocess; with `crash_after`, killed after saving that many chunks."""
  program = ([str(CRASH_AFTER_CHUNKS), str(crash_after)] if crash_after
             else ["-m", "jaxviz.cli"])
  command = [sys.executable, *program, "gallery", "--workdir", str(workdir),
             f"--config.weights={weights}", *job, *extra]
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
  crashed = gallery(work, weights, environment(tmp_path), crash_after=3)
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


# What `chunk_result` holds per filter: images [2, 2, 1] and activations [steps + 1 = 3].
SHAPES = {"image_shape": (2, 2, 1), "steps": 2}


def chunk_result(filters, height=2) -> FilterResult:
  n = len(filters)
  return FilterResult(np.asarray(filters), np.full((n, height, height, 1), 0.5, np.float32),
                      np.ones((n, 3), np.float32), np.full(n, 0.9, np.float32))


def test_manifest_refuses_another_config_or_other_weights(tmp_path):
  state = RunState(tmp_path)
  assert state.check_config(config()) is False
  assert state.start(config(), "aaa") == "new"
  state.begin_layer("conv2d_2", [0, 1], 2, ["images.npy"], **SHAPES)
  state.save_chunk("conv2d_2", 0, chunk_result([0, 1]))  # a run with results to protect
  assert state.check_config(config()) is True
  assert state.start(config(), "aaa") == "resumed"
  with pytest.raises(JaxvizError, match=r"steps: 20 → 5.*another --workdir"):
    state.check_config(config(steps=5))
  with pytest.raises(JaxvizError, match="weights differ"):
    state.start(config(), "bbb")
  (tmp_path / ".jaxviz" / "run.json").write_text("{not json")
  with pytest.raises(JaxvizError, match="unreadable"):
    state.check_config(config())


def test_a_run_saved_before_a_key_existed_resumes_under_the_value_that_reproduces_it(tmp_path):
  state = RunState(tmp_path)
  state.start(config(), "aaa")  # saved before `crop` and `wake` existed
  state.begin_layer("conv2d_2", [0, 1], 2, ["images.npy"], **SHAPES)
  state.save_chunk("conv2d_2", 0, chunk_result([0, 1]))
  assert RunState(tmp_path).check_config(config(crop=1.0, wake=False)) is True
  with pytest.raises(JaxvizError, match=r"crop: 1\.0 → 0\.875"):
    RunState(tmp_path).check_config(config(crop=0.875))
  with pytest.raises(JaxvizError, match=r"wake: False → True"):
    RunState(tmp_path).check_config(config(wake=True))
  assert RunState(tmp_path).check_config(config(wake_passes="pixel")) is True
  with pytest.raises(JaxvizError, match=r"wake_passes: 'pixel' → 'fourier,pixel'"):
    RunState(tmp_path).check_config(config(wake_passes="fourier,pixel"))
  with pytest.raises(JaxvizError, match=r"other: '<absent>' → 1"):  # not a key added later
    RunState(tmp_path).check_config(config(other=1))


def test_config_differences_names_nested_and_missing_keys():
  old = {"steps": 20, "nested": {"a": 1, "b": 2}, "gone": True}
  new = {"steps": 20, "nested": {"a": 1, "b": 3}, "added": "x"}
  assert config_differences(old, new) == [
      "added: '<absent>' → 'x'", "gone: True → '<absent>'", "nested.b: 2 → 3"]


def test_only_missing_or_broken_chunks_are_todo(tmp_path):
  state = RunState(tmp_path)
  filters = list(range(10))
  plan = state.begin_layer("conv2d_2", filters, 4, ["images.npy"], **SHAPES)
  assert plan == {"done": False, "chunk_size": 4, "todo": [0, 1, 2]}
  chunks = plan_chunks(filters, 4)
  state.save_chunk("conv2d_2", 0, chunk_result(chunks[0]))
  state.save_chunk("conv2d_2", 2, chunk_result(chunks[2]))
  assert not list(state.layer_dir("conv2d_2").glob(".*"))  # no temporary files left
  # A rerun keeps the first run's chunk size, whatever it asks for now.
  assert state.begin_layer("conv2d_2", filters, 3, ["images.npy"], **SHAPES)["todo"] == [1]
  state.chunk_path("conv2d_2", 2).write_bytes(b"truncated")  # e.g. written by other means
  plan = state.begin_layer("conv2d_2", filters, 4, ["images.npy"], **SHAPES)
  assert plan == {"done": False, "chunk_size": 4, "todo": [1, 2]}
  assert not state.chunk_path("conv2d_2", 2).exists()


def test_layer_result_joins_chunks_and_finish_cleans_up(tmp_path):
  state = RunState(tmp_path)
  filters = [3, 1, 4, 1, 5]
  state.begin_layer("conv2d_1", filters, 2, ["images.npy"], **SHAPES)
  for i, chunk in enumerate(plan_chunks(filters, 2)):
    state.save_chunk("conv2d_1", i, chunk_result(chunk))
  result = state.layer_result("conv2d_1", filters, 2)
  assert result.filters.tolist() == filters
  assert result.images.shape == (5, 2, 2, 1) and result.activations.shape == (5, 3)
  (tmp_path / "conv2d_1").mkdir()
  (tmp_path / "conv2d_1" / "images.npy").write_bytes(b"x")
  state.finish_layer("conv2d_1")
  assert not list(state.layer_dir("conv2d_1").glob("chunk-*"))
  assert state.begin_layer("conv2d_1", filters, 2, ["images.npy"], **SHAPES)["done"] is True
  # Outputs deleted by hand: the layer is computed again.
  (tmp_path / "conv2d_1" / "images.npy").unlink()
  assert state.begin_layer("conv2d_1", filters, 2, ["images.npy"], **SHAPES)["todo"] == [0, 1, 2]


def test_a_chunk_of_other_filters_is_not_reused(tmp_path):
  state = RunState(tmp_path)
  state.begin_layer("conv2d_1", [0, 1, 2, 3], 2, ["images.npy"], **SHAPES)
  state.save_chunk("conv2d_1", 0, chunk_result([7, 8]))
  assert state.load_chunk("conv2d_1", 0, [0, 1]) is None
  manifest = {"filters": [0, 1, 2, 3], "chunk_size": 2}
  assert json.loads((state.layer_dir("conv2d_1") / "plan.json").read_text()) == manifest


# --- damaged run state ---------------------------------------------------------------------------

def wrong_shape(path: Path, filters) -> None:
  n = len(filters)
  path.write_bytes(chunk_bytes(FilterResult(np.asarray(filters), np.zeros((n, 3, 3, 1)),
                                            np.zeros((n, 3)), np.zeros(n))))


def foreign_npz(path: Path, filters) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, weights=np.zeros(3), bias=np.ones(2))
  path.write_bytes(buffer.getvalue())


def truncated(path: Path, filters) -> None:
  path.write_bytes(chunk_bytes(chunk_result(filters))[:300])


# Every kind of damage a chunk file may suffer; each makes the file unusable.
DAMAGE = {
    "empty": lambda path, filters: path.write_bytes(b""),
    "truncated": truncated,
    "foreign": foreign_npz,
    "text": lambda path, filters: path.write_text("filters,images\n1,2\n"),
    "wrong shape": wrong_shape,
}


def reports(state: RunState) -> list[str]:
  lines = []
  state.report = lines.append
  return lines


def test_damaged_chunks_are_reported_deleted_and_recomputed(tmp_path):
  state = RunState(tmp_path)
  lines = reports(state)
  filters = list(range(14))
  chunks = plan_chunks(filters, 2)
  state.begin_layer("conv2d_2", filters, 2, ["images.npy"], **SHAPES)
  for i, chunk in enumerate(chunks):
    state.save_chunk("conv2d_2", i, chunk_result(chunk))
  damaged = {0: DAMAGE["empty"], 1: DAMAGE["truncated"], 2: DAMAGE["foreign"],
             3: DAMAGE["text"], 4: DAMAGE["wrong shape"],
             5: lambda path, f: path.write_bytes(chunk_bytes(chunk_result(f)._replace(
                 activations=np.ones((len(f), 4), np.float32))))}  # steps + 1 ≠ 3
  for i, write in damaged.items():
    write(state.chunk_path("conv2d_2", i), chunks[i])
  plan = state.begin_layer("conv2d_2", filters, 2, ["images.npy"], **SHAPES)
  assert plan == {"done": False, "chunk_size": 2, "todo": [0, 1, 2, 3, 4, 5]}
  assert len(lines) == 6
  for i, line in zip(damaged, lines):
    assert f"damaged resume file {state.chunk_path('conv2d_2', i)}" in line
    assert "computing its chunk again" in line
    assert not state.chunk_path("conv2d_2", i).exists()
  assert "unreadable" in lines[0] and "holds ['bias', 'weights']" in lines[2]
  assert "images are float32 (2, 3, 3, 1), expected float32 (2, 2, 2, 1)" in lines[4]
  assert "activations are float32 (2, 4), expected float32 (2, 3)" in lines[5]
  # NaN results are results: only the structure of a chunk is checked.
  nan = chunk_result(chunks[6])._replace(activations=np.full((2, 3), np.nan, np.float32))
  state.save_chunk("conv2d_2", 6, nan)
  assert np.isnan(state.load_chunk("conv2d_2", 6, chunks[6]).activations).all()


def test_a_damaged_plan_or_done_file_is_reported_and_that_part_redone(tmp_path):
  state = RunState(tmp_path)
  lines = reports(state)
  filters = [0, 1, 2, 3]
  state.begin_layer("conv2d_1", filters, 2, ["images.npy"], **SHAPES)
  state.save_chunk("conv2d_1", 0, chunk_result([0, 1]))
  for text in ("", '{"filters": [0, 1, 2, 3], "chunk_size": "2"}', "[1, 2]", "{trunc"):
    (state.layer_dir("conv2d_1") / "plan.json").write_text(text)
    plan = state.begin_layer("conv2d_1", filters, 2, ["images.npy"], **SHAPES)
    assert plan == {"done": False, "chunk_size": 2, "todo": [0, 1]}  # its chunks go with it
    assert lines.pop().startswith(f"damaged resume file {state.layer_dir('conv2d_1')}/plan.json")
  for i, chunk in enumerate(plan_chunks(filters, 2)):
    state.save_chunk("conv2d_1", i, chunk_result(chunk))
  (tmp_path / "conv2d_1").mkdir()
  (tmp_path / "conv2d_1" / "images.npy").write_bytes(b"x")
  state.finish_layer("conv2d_1")
  (state.layer_dir("conv2d_1") / "done.json").write_bytes(b'{"do')
  plan = state.begin_layer("conv2d_1", filters, 2, ["images.npy"], **SHAPES)
  assert plan == {"done": False, "chunk_size": 2, "todo": [0, 1]}
  assert lines == [f"damaged resume file {state.layer_dir('conv2d_1')}/done.json (not JSON: "
                   "Unterminated string starting at: line 1 column 2 (char 1)); starting that "
                   "part again"]


DAMAGE_JOB = ["--config.layer=conv2d_2", "--config.filters=0-9", "--config.chunk_size=2",
              "--config.steps=2"]


def test_a_rerun_over_damaged_chunks_equals_a_clean_run(tmp_path):
  weights = write_weights(tmp_path / "lenet.msgpack")
  env = environment(tmp_path)
  clean = gallery(tmp_path / "clean", weights, env, job=DAMAGE_JOB)
  assert clean.returncode == 0, clean.stderr
  work = tmp_path / "work"
  crashed = gallery(work, weights, env, job=DAMAGE_JOB, crash_after=1)
  assert crashed.returncode == -9, crashed.stderr
  state = RunState(work)
  paths = [state.chunk_path("conv2d_2", i) for i in range(5)]
  for path, chunk, write in zip(paths, plan_chunks(range(10), 2), DAMAGE.values()):
    write(path, chunk)
  resumed = gallery(work, weights, env, job=DAMAGE_JOB)
  assert resumed.returncode == 0, resumed.stderr
  for path in paths:
    assert resumed.stderr.count(f"damaged resume file {path}") == 1, resumed.stderr
  assert "Traceback" not in resumed.stderr
  for name in OUTPUTS:
    assert (work / "conv2d_2" / name).read_bytes() == (
        tmp_path / "clean" / "conv2d_2" / name).read_bytes()


# --- runs that fail early leave nothing that blocks the next one --------------------------------

def test_a_run_that_saved_nothing_does_not_block_another_config(tmp_path):
  state = RunState(tmp_path)
  assert state.start(config(), "aaa") == "new"  # then killed before its first chunk
  (state.layer_dir("conv2d_2")).mkdir()
  (state.layer_dir("conv2d_2") / "plan.json").write_text('{"filters": [0], "chunk_size": 4}')
  other = RunState(tmp_path)
  assert other.check_config(config(steps=5)) is False
  assert other.start(config(steps=5), "bbb") == "new"
  assert not state.layer_dir("conv2d_2").exists()  # the old run's plan went with its manifest
  other.begin_layer("conv2d_2", [0, 1], 2, ["images.npy"], **SHAPES)
  other.save_chunk("conv2d_2", 0, chunk_result([0, 1]))
  with pytest.raises(JaxvizError, match="different config"):
    RunState(tmp_path).check_config(config())
  other.abandon()  # it saved a chunk: its manifest stays, so a rerun resumes it
  assert RunState(tmp_path).check_config(config(steps=5)) is True


def test_abandon_deletes_only_the_state_of_a_new_run_that_saved_nothing(tmp_path):
  state = RunState(tmp_path)
  state.lock()
  state.start(config(), "aaa")
  state.begin_layer("conv2d_2", [0, 1], 2, ["images.npy"], **SHAPES)
  state.abandon()
  assert sorted(p.name for p in state.root.iterdir()) == ["lock"]
  state.release()
  (tmp_path / ".jaxviz" / "run.json").write_text("{}")  # another run's manifest, unreadable
  resumed = RunState(tmp_path)
  assert resumed.created is False
  resumed.abandon()
  assert (tmp_path / ".jaxviz" / "run.json").exists()


@pytest.fixture
def weights(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXVIZ_CACHE", str(tmp_path / "cache"))
  return write_weights(tmp_path / "lenet.msgpack")


TINY = ["--config.filters=0", "--config.steps=1"]


def run_cli(workdir: Path, weights: Path, *extra: str) -> int:
  return cli.main(["gallery", "--workdir", str(workdir), f"--config.weights={weights}", *TINY,
                   *extra])


def test_a_run_failing_before_its_first_chunk_removes_its_manifest(tmp_path, weights, capsys,
                                                                   monkeypatch):
  def fail(*args, **kwargs):
    raise JaxvizError("the device ran out of memory (simulated)")
    yield

  with monkeypatch.context() as patch:
    patch.setattr(distributed, "compute_chunks", fail)
    assert run_cli(tmp_path / "w", weights, "--config.seed=3") == 2
  assert "simulated" in capsys.readouterr().err
  assert sorted(p.name for p in (tmp_path / "w" / ".jaxviz").iterdir()) == ["lock"]
  assert run_cli(tmp_path / "w", weights) == 0  # the corrected command is not refused
  assert (tmp_path / "w" / "conv2d_2" / "images.npy").exists()


def test_a_bad_exclude_border_is_refused_before_anything_is_written(tmp_path, weights, capsys):
  assert run_cli(tmp_path / "w", weights, "--config.exclude_border=100") == 2
  err = capsys.readouterr().err
  # The default's steps see windows of 24 of the 28 pixels: a 12×12 map, not 14×14.
  assert "exclude_border=100 leaves nothing of the 12×12 activation map of 'conv2d_2'" in err
  assert "crop=0.875" in err and "use a value below 6" in err
  assert not (tmp_path / "w").exists()
  assert run_cli(tmp_path / "w", weights, "--config.exclude_border=5") == 0


# --- one run at a time ---------------------------------------------------------------------------

HOLD = ("import sys; from jaxviz.resume import RunState; state = RunState(sys.argv[1]); "
        "state.lock(); print('locked', flush=True); sys.stdin.read()")


def hold_lock(workdir: Path, env: dict) -> subprocess.Popen:
  """Another process that locks `workdir` until its stdin closes."""
  holder = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
  assert holder.stdout.readline().strip() == "locked"
  return holder


def test_a_second_run_names_the_run_holding_the_workdir(tmp_path, weights, capsys):
  work = tmp_path / "w"
  holder = hold_lock(work, environment(tmp_path))
  try:
    assert run_cli(work, weights) == 2
    err = capsys.readouterr().err
    assert f"is in use by process {holder.pid} on " in err
    assert f"(-c {work})" in err  # the holder's command line
    assert "--wait" in err and "another --workdir" in err
    assert not (work / "conv2d_2").exists() and not (work / ".jaxviz" / "run.json").exists()

    threading.Timer(1.0, holder.stdin.close).start()
    assert run_cli(work, weights, "--wait") == 0
    assert f"waiting for process {holder.pid} on " in capsys.readouterr().err
    assert (work / "conv2d_2" / "images.npy").exists()
  finally:
    holder.kill()
    holder.wait()
