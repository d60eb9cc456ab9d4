"""One device per CPU core (`jaxviz.host_devices`): asked for only where it can help and only
before JAX starts; a filter's images are the same on a split host. Each case runs in a fresh
process, since this one's backend has already started (conftest.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxviz import host_devices

REPO = Path(__file__).resolve().parents[1]

SPLIT = """
import json, os
from jaxviz import host_devices
asked = host_devices.split_cpu()
import jax
print(json.dumps({"asked": asked, "devices": jax.local_device_count(),
                  "omp": os.environ.get("OMP_NUM_THREADS")}))
"""

ENGINE = """
import sys
import numpy as np
from jaxviz import host_devices
host_devices.split_cpu()
import jax
from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.models import Model, get_spec
spec = get_spec(sys.argv[2])
size = None if spec.name == "lenet" else 32
model = Model(spec, spec.init_params(jax.random.key(0), **({"size": size} if size else {})))
layer = "conv2d_2" if spec.name == "lenet" else "block2_conv2"  # 64 → 128: oneDNN's channels
engine = FilterEngine(model, layer, AscentSettings(steps=3, jitter=0.07), size)
result = engine.run("0-6", seed=2, chunk_size=4)
np.savez(sys.argv[1], images=result.images, activations=result.activations,
         devices=jax.local_device_count(), conv=engine.ascent.conv)
"""


def run(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
  environment = {k: v for k, v in os.environ.items()
                 if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  environment.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), **env)
  done = subprocess.run([sys.executable, "-c", code, *args], env=environment,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  return done


def split(**env: str) -> dict:
  return json.loads(run(SPLIT, **env).stdout.splitlines()[-1])


needs_two_cores = pytest.mark.skipif(host_devices.cores() < 2, reason="a single-core host")


@needs_two_cores
def test_a_fresh_process_gets_one_device_per_core_and_one_onednn_thread_each():
  cores = host_devices.cores()
  assert split() == {"asked": cores, "devices": cores, "omp": "1"}
  assert split(OMP_NUM_THREADS="2") == {"asked": cores, "devices": cores, "omp": "2"}


def test_a_count_chosen_elsewhere_keeps_the_host_as_it_is():
  assert split(XLA_FLAGS="--xla_force_host_platform_device_count=3") == {
      "asked": 1, "devices": 3, "omp": None}
  assert split(JAX_NUM_CPU_DEVICES="1") == {"asked": 1, "devices": 1, "omp": None}


def test_too_late_once_the_backend_has_started():
  assert host_devices.split_cpu() == 1  # this process started JAX in conftest.py
  import jax
  assert jax.local_device_count() == 1


@needs_two_cores
@pytest.mark.parametrize("model", ["lenet", "vgg16"])
def test_a_split_host_gives_every_filter_the_images_of_one_device(tmp_path, model):
  run(ENGINE, str(tmp_path / "split.npz"), model)
  run(ENGINE, str(tmp_path / "one.npz"), model, JAX_NUM_CPU_DEVICES="1")
  split_run, one = np.load(tmp_path / "split.npz"), np.load(tmp_path / "one.npz")
  assert split_run["devices"] == host_devices.cores() and one["devices"] == 1
  assert split_run["conv"] == one["conv"]  # oneDNN's wherever it is built, split or not
  np.testing.assert_allclose(split_run["images"], one["images"], rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(split_run["activations"], one["activations"], rtol=1e-5, atol=1e-6)
