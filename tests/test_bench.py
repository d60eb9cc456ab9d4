import json
import os

import jax
import numpy as np
import pytest

from jaxviz import bench, cli, flops, host_devices, onednn
from jaxviz.config import load_config
from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.models import Model, get_spec

TINY = ["--config.num_filters=2", "--config.steps=2", "--config.repeats=1",
        "--config.baseline_filters=1", "--config.peak_size=128", "--config.peak_trials=2"]


def test_flop_count_of_lenet_conv2d_2_equals_hand_count():
  conv2d_1 = 2 * 28 * 28 * 1 * 20 * 25   # 28×28 input, 1 → 20 channels, 5×5 kernel
  conv2d_2 = 2 * 14 * 14 * 20 * 50 * 25  # after the 2×2 pool: 14×14, 20 → 50 channels, 5×5
  per_step = (conv2d_1 + conv2d_2) * 2   # forward, and the same again backward to the image
  spec = get_spec("lenet")
  assert flops.step_flop(spec, "conv2d_2") == per_step
  assert flops.job_flop(spec, "conv2d_2", 28, filters=50, steps=20) == per_step * 50 * 20
  work = flops.layer_work(spec, "conv2d_2")
  assert [(w.name, w.input_shape) for w in work] == [("conv2d_1", (28, 28, 1)),
                                                     ("conv2d_2", (14, 14, 20))]


def test_flop_count_of_vgg16_follows_the_input_size():
  spec = get_spec("vgg16")
  block1 = 2 * 64 * 64 * 3 * 64 * 9 + 2 * 64 * 64 * 64 * 64 * 9
  assert flops.step_flop(spec, "block1_conv2", 64) == 2 * block1
  assert flops.layer_work(spec, "block3_conv1", 64)[-1].input_shape == (16, 16, 128)


def test_random_weights_are_he_normal():
  params = bench.random_params(get_spec("lenet"))
  kernel = np.asarray(params["conv2d_2"]["kernel"])
  assert kernel.shape == (5, 5, 20, 50)
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (5 * 5 * 20)), rtol=0.03)
  assert not np.any(params["conv2d_2"]["bias"])
  again = bench.random_params(get_spec("lenet"))
  np.testing.assert_array_equal(kernel, again["conv2d_2"]["kernel"])


def test_seed_method_does_the_engines_work():
  # From the same start, the seed method and the engine must reach the same images.
  spec = get_spec("lenet")
  model = Model(spec, bench.random_params(spec))
  images = bench.seed_method(model, "conv2d_2", [3, 7], steps=3, size=28)
  start = spec.preprocess(np.stack([bench.seed_start(spec, f, (28, 28, 1), 20.0)
                                    for f in (3, 7)]))
  engine = FilterEngine(model, "conv2d_2", AscentSettings(steps=3, follow_relu=False))
  result = engine.run([3, 7], start_images=start)
  np.testing.assert_allclose(images, result.images, rtol=1e-4, atol=1e-4)


def test_bench_prints_every_key_for_a_tiny_job(capsys):
  assert cli.main(["bench", "--json", *TINY]) == 0
  lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
  assert len(lines) == 1
  record = json.loads(lines[0])
  assert set(bench.KEYS) <= set(record)
  assert (record["model"], record["layer"], record["filters"], record["steps"],
          record["size"]) == ("lenet", "conv2d_2", 2, 2, 28)
  for key in ("seconds_cold", "seconds_warm", "filters_per_s", "work_gflop",
              "effective_gflops_per_s", "peak_gflops_per_s", "fraction_of_peak",
              "baseline_filters_per_s", "speedup_vs_baseline", "peak_memory_bytes"):
    assert record[key] > 0, key
  assert record["work_gflop"] == pytest.approx(
      flops.job_flop(get_spec("lenet"), "conv2d_2", 28, 2, 2) / 1e9)
  assert record["fraction_of_peak"] == pytest.approx(
      record["work_gflop"] / record["seconds_warm"] / record["peak_gflops_per_s"])
  assert record["device"].startswith(jax.devices()[0].platform)
  # The fresh process splits the host into one device per core (`jaxviz.host_devices`).
  assert (record["device_count"] > 1) == (record["platform"] == "cpu" and host_devices.cores() > 1)
  assert record["conv"] == onednn.resolve("auto")  # what "auto" is on this CPU
  assert record["seconds_process"] > record["seconds_cold"]  # it ran in a fresh process

  table = bench.format_table([record])
  for header, _, _ in bench.COLUMNS:
    assert header in table
  row = bench.markdown_row(record, "jaxviz bench")
  assert row.count("|") == bench.MARKDOWN_HEADER.splitlines()[0].count("|")


def test_bench_leaves_accelerator_memory_to_the_fresh_process(monkeypatch):
  # On a GPU, JAX takes 75 % of the memory when its backend starts unless told otherwise, and
  # the fresh process timing the cold start beside it ran out of memory (seen on an H100).
  monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
  bench.leave_accelerator_memory_free()
  assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
  monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "true")  # the user's own choice stays
  bench.leave_accelerator_memory_free()
  assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"


def test_a_comma_list_of_layers_is_one_job_each():
  config = load_config("bench_vgg16")
  jobs = bench.jobs_from_config(config)
  assert [j["layer"] for j in jobs] == ["block1_conv2", "block3_conv1", "block5_conv1"]
  assert "peak_size" not in jobs[0] and set(bench.JOB_FIELDS) <= set(jobs[0])


@pytest.mark.parametrize("name", ["bench_lenet", "bench_vgg16", "bench_vgg16_block1_conv2",
                                  "bench_vgg16_block3_conv1", "bench_vgg16_block5_conv1"])
def test_presets_describe_valid_jobs(name):
  jobs = bench.jobs_from_config(load_config(name))
  for job in jobs:
    spec, count = bench.validate(job)
    assert count == job["num_filters"]
  if name.startswith("bench_vgg16"):
    assert all((j["num_filters"], j["size"], j["steps"], j["random_weights"]) == (16, 64, 20, True)
               for j in jobs)
  if name == "bench_lenet":
    assert [(j["layer"], j["num_filters"], j["size"], j["steps"]) for j in jobs] == [
        ("conv2d_2", 50, 28, 20)]


def test_too_many_filters_is_a_clear_error(capsys):
  assert cli.main(["bench", "--config.num_filters=51"]) == 2
  assert "num_filters must be 1–50" in capsys.readouterr().err
