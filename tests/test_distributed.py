"""All local devices and many processes give the same outputs as one device.

The gallery command runs in subprocesses: 8 forced host devices (XLA_FLAGS), and 2 processes
joined by jax.distributed on 127.0.0.1 (through scripts/launch_local_processes.sh). Each output
file must equal the single-device run's byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxviz import chunking, distributed
from jaxviz.jobs import gallery as job
from jaxviz.config import load_config
from jaxviz.errors import JaxvizError
from jaxviz.models import get_spec

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("images.npy", "activations.npy", "filters.json", "gallery.png", "config.json")
# 7 filters in chunks of 3: the last chunk is short and padded; 3 chunks on 8 devices leave 5 idle.
JOB = ["--config.layer=conv2d_1", "--config.filters=0-6", "--config.chunk_size=3",
       "--config.steps=2", "--config.jitter=0.05"]


def environment(tmp: Path, devices: int = 1) -> dict:
  env = dict(os.environ, JAXVIZ_CACHE=str(tmp / "cache"), JAX_PLATFORMS="cpu",
             PYTHONPATH=str(REPO))
  # One device is asked for too: otherwise the gallery command splits the host into one device
  # per core (`jaxviz.host_devices`).
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def gallery(workdir: Path, weights: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
  command = [sys.executable, "-m", "jaxviz.cli", "gallery", "--workdir", str(workdir),
             f"--config.weights={weights}", *JOB, *extra]
  return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def assert_same_outputs(a: Path, b: Path) -> None:
  """Every output byte for byte, except robustness in filters.json: a ratio of means over
  transformed images, whose last float32 bit may differ with how XLA fuses the resampling on
  one device or many; it is compared to 1e-6."""
  for name in OUTPUTS:
    if name == "filters.json":
      first, second = (json.loads((folder / name).read_text()) for folder in (a, b))
      strip = lambda records: [{k: v for k, v in r.items() if k != "robustness"}
                               for r in records]
      assert strip(first) == strip(second), "filters.json differs"
      np.testing.assert_allclose([r["robustness"] or 0.0 for r in first],
                                 [r["robustness"] or 0.0 for r in second], rtol=1e-6)
      continue
    assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs"


@pytest.fixture(scope="module")
def single(tmp_path_factory):
  """The plain run: one process, one device. Returns (tmp, weights, layer folder)."""
  tmp = tmp_path_factory.mktemp("distributed")
  weights = write_weights(tmp / "lenet.msgpack")
  done = gallery(tmp / "single", weights, environment(tmp))
  assert done.returncode == 0, done.stderr
  assert "1 process × 1 cpu device" in done.stderr
  return tmp, weights, tmp / "single" / "conv2d_1"


def write_weights(path: Path) -> Path:
  """Random LeNet weights, written by a subprocess so this process never starts JAX's backend."""
  code = ("import jax, sys; from jaxviz import checkpoint; from jaxviz.models import get_spec; "
          "s = get_spec('lenet'); checkpoint.save(sys.argv[1], 'lenet', "
          "s.init_params(jax.random.key(7)), {})")
  subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=dict(
      os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO)))
  return path


def test_eight_devices_equal_one_device(single):
  tmp, weights, reference = single
  done = gallery(tmp / "eight", weights, environment(tmp, devices=8))
  assert done.returncode == 0, done.stderr
  assert "1 process × 8 cpu devices" in done.stderr
  assert_same_outputs(reference, tmp / "eight" / "conv2d_1")


def test_two_processes_equal_one_process(single):
  tmp, weights, reference = single
  env = environment(tmp, devices=2)
  env["JAXVIZ"] = f"{sys.executable} -m jaxviz.cli"
  command = [str(REPO / "scripts" / "launch_local_processes.sh"), "2", "gallery", "--workdir",
             str(tmp / "two"), f"--config.weights={weights}", *JOB]
  done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert "2 processes × 2 cpu devices" in done.stderr
  # Both processes' Gloo start-up messages ("[Gloo] Rank 0 is connected to 1 peer ranks. …")
  # share the pipe and may interleave with anything, even split a line; so count what process 0
  # prints (its path and its summary) in the whole output: once each, never by process 1 too.
  out = done.stdout
  assert out.count(str(tmp / "two" / "conv2d_1")) == 1, out
  assert out.count("conv2d_1: ") == 1 and re.search(r"conv2d_1: \d+/\d+ live", out), out
  assert_same_outputs(reference, tmp / "two" / "conv2d_1")


def test_bad_process_flags_are_refused(tmp_path):
  done = gallery(tmp_path / "w", tmp_path / "none.msgpack", environment(tmp_path),
                 "--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=2")
  assert done.returncode == 2
  assert "process_id must be in 0 … 1" in done.stderr


def test_deal_gives_every_process_its_devices_worth_per_round():
  rounds = distributed.deal([0, 1, 2, 3, 4, 6, 9], processes=2, devices=2)
  assert rounds == [[[0, 1], [2, 3]], [[4, 6], [9]]]
  assert distributed.deal([5], processes=3, devices=4) == [[[5], [], []]]
  assert distributed.deal([], processes=2, devices=2) == []


def test_chunk_size_is_per_device_and_chosen_without_counting_devices():
  spec = get_spec("lenet")
  config = load_config("lenet_conv2d_2")
  config.chunk_size = 8
  assert job.chunk_size_for(config, spec, "conv2d_2", 50) == 8
  config.chunk_size = 64
  assert job.chunk_size_for(config, spec, "conv2d_2", 50) == 50
  config.chunk_size, config.memory_budget_mb = 0, 1
  assert job.chunk_size_for(config, spec, "conv2d_2", 50) == chunking.choose_chunk_size(
      spec, "conv2d_2", (28, 28, 1), 50, 1 << 20)
  config.chunk_size = -1
  with pytest.raises(JaxvizError, match="chunk_size"):
    job.chunk_size_for(config, spec, "conv2d_2", 50)


def test_no_cluster_means_one_process(monkeypatch):
  for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_NPROCS", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(name, raising=False)
  assert not distributed.launched_as_cluster()
  assert distributed.initialize("auto") is False
  assert distributed.initialize("off", num_processes=2) is False
  monkeypatch.setenv("SLURM_JOB_ID", "1")
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert distributed.launched_as_cluster()
  with pytest.raises(JaxvizError, match="distributed must be"):
    distributed.initialize("sometimes")


def free_port() -> int:
  """A loopback port nothing listens on (free when asked)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_alone(tmp: Path, process_id: int, port: int) -> tuple[subprocess.CompletedProcess, float]:
  """Process `process_id` of 2 started alone with a 2 s start-up limit: (result, seconds)."""
  start = time.monotonic()
  done = gallery(tmp / "w", tmp / "none.msgpack", environment(tmp),
                 f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                 f"--process_id={process_id}", "--init_timeout=2")
  return done, time.monotonic() - start


def test_an_unreachable_coordinator_stops_the_start_in_time(tmp_path):
  port = free_port()
  done, seconds = start_alone(tmp_path, 1, port)
  assert done.returncode == 2, done.stderr
  assert (f"error: cannot reach the coordinator at 127.0.0.1:{port} (process 0) within 2 s"
          in done.stderr)
  assert "--init_timeout" in done.stderr
  assert "Traceback" not in done.stderr and "Check failure" not in done.stderr
  assert seconds < 60
  assert not (tmp_path / "w").exists()


def test_partners_that_never_join_stop_process_0_in_time(tmp_path):
  port = free_port()
  done, seconds = start_alone(tmp_path, 0, port)
  assert done.returncode == 2, done.stderr
  assert (f"error: the multi-host runtime did not start within 2 s: not all 2 processes joined "
          f"the coordinator at 127.0.0.1:{port}") in done.stderr
  assert "Traceback" not in done.stderr and "Check failure" not in done.stderr
  assert seconds < 60


def test_waiting_for_the_coordinator_port():
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen()
    address = f"127.0.0.1:{server.getsockname()[1]}"
    distributed.wait_for_coordinator(address, time.monotonic() + 5, 5)
  with pytest.raises(JaxvizError, match=r"cannot reach the coordinator at 127\.0\.0\.1:\d+ "
                     r"\(process 0\) within 0\.5 s"):
    distributed.wait_for_coordinator(f"127.0.0.1:{free_port()}", time.monotonic() + 0.5, 0.5)


def test_bad_start_up_settings_are_refused():
  for timeout in (0, -1, float("nan"), float("inf"), 1e9):
    with pytest.raises(JaxvizError, match="init_timeout must be a number of seconds > 0"):
      distributed.initialize("auto", timeout=timeout)
    with pytest.raises(JaxvizError, match="heartbeat_timeout must be a number of seconds > 0"):
      distributed.initialize("auto", heartbeat_timeout=timeout)
  for address in ("127.0.0.1", "127.0.0.1:http", ":8476", "host:0"):
    with pytest.raises(JaxvizError, match="coordinator_address must be HOST:PORT"):
      distributed.initialize("on", coordinator_address=address, num_processes=2, process_id=1)
  assert distributed.parse_address("[::1]:8476") == ("::1", 8476)
  assert distributed.is_loopback("127.0.0.1") and distributed.is_loopback("::1")
  assert not distributed.is_loopback("10.0.0.1") and not distributed.is_loopback("node-3")



def test_a_killed_partner_stops_the_others_with_a_message(single):
  """Process 1 killed mid-run: process 0 stops with exit 2 and a message saying to rerun, not
  JAX's abort with a C++ stack trace, and not after JAX's 100 s heartbeat limit."""
  tmp, weights, _ = single
  port, env = free_port(), environment(tmp)
  start = [sys.executable, "-m", "jaxviz.cli", "gallery", "--workdir", str(tmp / "killed"),
           f"--config.weights={weights}", "--config.layer=conv2d_2", "--config.filters=0-3",
           "--config.steps=300", f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
  leader = subprocess.Popen(start + ["--process_id=0"], env=env, stderr=subprocess.PIPE,
                            text=True)
  partner = subprocess.Popen(start + ["--process_id=1"], env=env, stderr=subprocess.DEVNULL)
  lines = []
  for line in leader.stderr:
    lines.append(line)
    if "optimizing" in line:
      break
  partner.kill()
  killed = time.monotonic()
  err = "".join(lines) + leader.stderr.read()
  assert leader.wait(timeout=120) == 2, err
  assert time.monotonic() - killed < 90
  assert "error: another process stopped, so this one stops too" in err
  assert "Start the same command again on every process" in err
  assert "Traceback" not in err and "Check failure" not in err
