"""Throughput of visualization jobs: cold and warm time, work done, and two yardsticks.

    jaxviz bench                                     # LeNet conv2d_2 (configs/bench_lenet.py)
    jaxviz bench --config bench_vgg16 --json         # three VGG16 jobs, one JSON line each
    jaxviz bench --config bench_vgg16_block3_conv1 --config.num_filters=64

For every job (one per layer in `config.layer`):

  - **cold**: a fresh Python process builds the engine and runs the job once, compile included.
    Making the weights is timed apart (`seconds_weights`), and so is the whole process with its
    imports and backend start-up (`seconds_process`). JAX's persistent compilation cache is off
    there unless `config.compilation_cache` is True.
  - **warm**: the same process then repeats the identical call `config.repeats` times; the median
    is `seconds_warm`. Its maximum resident memory (on GPU: the device's peak bytes in use) is
    `peak_memory_bytes`.
  - **work**: FLOP of the plain algorithm (`jaxviz.flops`), so work the engine avoids shows up as
    a `fraction_of_peak` above what the plain algorithm could reach.
  - **peak**: a jitted `peak_size`² float32 matmul in this process, best of `peak_trials`,
    measured before the first job and after each; the best of the whole run counts.
  - **baseline**: the seed method on the same work: one filter at a time, a Python loop of steps
    over one compiled single-image value-and-gradient, the update done in NumPy. It is timed
    warm (compiled once per job) on the first `baseline_filters` filters and scaled to all.

The engine is used only through its public API (`FilterEngine(...).run`), so any change to it
shows up here.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import flops, host_devices, objectives, onednn
from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.errors import JaxvizError
from jaxviz.models import Model, get_spec
from jaxviz.models.spec import ModelSpec, Params
from jaxviz.progress import SILENT, Progress
from jaxviz.ranges import split_names

# The keys every record has, at least.
KEYS = ("model", "layer", "filters", "steps", "size", "seconds_cold", "seconds_warm",
        "filters_per_s", "work_gflop", "effective_gflops_per_s", "peak_gflops_per_s",
        "fraction_of_peak", "baseline_filters_per_s", "speedup_vs_baseline",
        "peak_memory_bytes", "device")

# Config fields every job needs. A job is the whole config (engine settings included) but
# MEASUREMENT_FIELDS, which only this process uses; the fresh process gets the job as JSON.
JOB_FIELDS = ("model", "layer", "num_filters", "steps", "size", "seed", "random_weights", "weights",
              "dataset", "chunk_size", "repeats", "compilation_cache")
MEASUREMENT_FIELDS = ("peak_size", "peak_trials", "baseline_filters", "fresh_process")

RESULT_MARK = "JAXVIZ_BENCH_RESULT "


# --- the model -------------------------------------------------------------------------------

def random_params(spec: ModelSpec, seed: int = 0) -> Params:
  """He-normal kernels (`jax.nn.initializers.he_normal`: fan-in scaled truncated normal, as
  Keras' `he_normal`) and zero biases for every weighted layer of `spec`, made by one compiled
  call; layer i draws from `fold_in(key(seed), i)`. The key is XLA's RngBitGenerator ("rbg"),
  several times faster than threefry on CPU for VGG16's 15 M weights."""
  init = jax.nn.initializers.he_normal()
  shapes = spec.param_shapes()

  def make(key):
    return {name: {"kernel": init(jax.random.fold_in(key, i), s["kernel"], jnp.float32),
                   "bias": jnp.zeros(s["bias"], jnp.float32)}
            for i, (name, s) in enumerate(shapes.items())}

  return jax.jit(make)(jax.random.key(seed, impl="rbg"))


@functools.lru_cache(maxsize=4)
def _random_model(name: str, seed: int) -> Model:
  spec = get_spec(name)
  return Model(spec, random_params(spec, seed))


def make_model(job: Mapping) -> Model:
  """The job's model: random He-normal weights, or the weights a gallery job would load."""
  if job["random_weights"]:
    return _random_model(job["model"], job["seed"])
  from jaxviz.loading import load_model
  return load_model(job["model"], job["weights"] or None, dataset=job["dataset"])


def filter_indices(job: Mapping, num_filters: int) -> list[int]:
  """The first `job["num_filters"]` filters (0 = all of the layer's), checked."""
  n = job["num_filters"] or num_filters
  if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= num_filters:
    raise JaxvizError(f"num_filters must be 1–{num_filters} for {job['layer']!r} (0 = all), "
                      f"got {job['num_filters']!r}")
  return list(range(n))


# --- the machine -----------------------------------------------------------------------------

def cpu_model() -> str:
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def cpu_count() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def device_info() -> dict:
  """`device` (in words), `platform` and `device_count` of JAX's default backend."""
  devices = jax.devices()
  first = devices[0]
  if first.platform == "cpu":
    split = f", {len(devices)} devices" if len(devices) > 1 else ""  # `jaxviz.host_devices`
    words = f"cpu ({cpu_model()}, {cpu_count()} cores{split})"
  else:
    words = f"{first.platform} ({first.device_kind}) ×{len(devices)}"
  return {"device": words, "platform": first.platform, "device_count": len(devices)}


def peak_memory_bytes() -> int:
  """On an accelerator its peak bytes in use; on CPU this process's maximum resident set."""
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"])
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def matmul_peak(size: int = 2048, trials: int = 10) -> float:
  """GFLOP/s of a jitted `[size, size] @ [size, size]` float32 matmul, best of `trials`.

  On an accelerator each trial averages 20 back-to-back calls, so dispatch does not count.
  """
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (size, size), jnp.float32)
  b = jax.random.normal(kb, (size, size), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  matmul(a, b).block_until_ready()
  inner = 1 if jax.devices()[0].platform == "cpu" else 20
  best = float("inf")
  for _ in range(max(trials, 1)):
    start = time.perf_counter()
    for _ in range(inner):
      c = matmul(a, b)
    c.block_until_ready()
    best = min(best, (time.perf_counter() - start) / inner)
  return 2 * size ** 3 / best / 1e9


# --- the engine, timed -----------------------------------------------------------------------

def time_job(job: Mapping, progress: Progress = SILENT) -> dict:
  """Runs one job through `FilterEngine` in this process: cold (engine construction, compile
  and the first run) and then `repeats` warm runs of the same call.

  The weights are made (or loaded) first and timed apart as `seconds_weights`: random weights
  stand in for reading a checkpoint. Returns those, `seconds_cold`, `seconds_warm` (median),
  `seconds_warm_runs`, `peak_memory_bytes`, `filters` (the count run), `conv` (who ran the
  convolutions) and the device keys.
  """
  info = device_info()
  settings = AscentSettings.from_config(job)
  start = time.perf_counter()
  model = make_model(job)
  jax.block_until_ready(model.params)
  weights = time.perf_counter() - start
  start = time.perf_counter()
  engine = FilterEngine(model, job["layer"], settings, job["size"])
  indices = filter_indices(job, engine.num_filters)
  engine.run(indices, seed=job["seed"], chunk_size=job["chunk_size"])
  cold = time.perf_counter() - start
  progress(f"{job['layer']}: weights {weights:.2f}s, cold {cold:.2f}s")
  warm = []
  for _ in range(max(job["repeats"], 1)):
    start = time.perf_counter()
    engine.run(indices, seed=job["seed"], chunk_size=job["chunk_size"])
    warm.append(time.perf_counter() - start)
  progress(f"{job['layer']}: warm {', '.join(f'{t:.2f}s' for t in warm)}")
  return {"filters": len(indices), "seconds_weights": weights, "seconds_cold": cold,
          "seconds_warm": statistics.median(warm), "seconds_warm_runs": warm,
          "peak_memory_bytes": peak_memory_bytes(), "conv": onednn.resolve(settings.conv),
          **info}


def leave_accelerator_memory_free() -> None:
  """Makes this process take accelerator memory as it needs it, not 75 % of it at start.

  JAX on a GPU grabs 75 % of the device's memory when its backend starts; the fresh process
  that times a job's cold start beside this one would then run out of memory. Call it before
  anything here starts the backend; a value the user set is kept.
  """
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def time_job_fresh(job: Mapping) -> dict:
  """`time_job` in a fresh Python process (`python -m jaxviz.bench --one JOB`); adds
  `seconds_process`, that process's whole wall time (interpreter, imports, backend, job)."""
  env = dict(os.environ)
  root = str(Path(__file__).resolve().parents[1])
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
  start = time.perf_counter()
  done = subprocess.run([sys.executable, "-m", "jaxviz.bench", "--one", json.dumps(dict(job))],
                        stdout=subprocess.PIPE, text=True, env=env, check=False)
  seconds = time.perf_counter() - start
  lines = [l for l in done.stdout.splitlines() if l.startswith(RESULT_MARK)]
  if done.returncode != 0 or not lines:
    raise JaxvizError(f"the fresh process timing {job['model']} {job['layer']} failed (exit "
                      f"{done.returncode}); its messages are above")
  return {**json.loads(lines[-1][len(RESULT_MARK):]), "seconds_process": seconds}


# --- the seed method -------------------------------------------------------------------------

def seed_gradient(model: Model, layer: str):
  """The seeds' compiled function: pixels `[1, H, W, C]` (0–255 scale), filter k → (loss,
  normalized gradient with respect to the pixels).

  The loss is the mean of channel k of the full layer output, as Keras computes it.
  """
  module, spec = model.spec.module, model.spec

  def loss(params, pixels, k):
    y = module.apply({"params": params}, spec.pixels_to_input(pixels), upto=layer)
    return jnp.mean(jnp.take(y, k, axis=-1))

  def iterate(params, x, k):
    value, grad = jax.value_and_grad(loss, argnums=1)(params, x, k)
    return value, grad / (jnp.sqrt(jnp.mean(grad ** 2)) + 1e-5)

  return functools.partial(jax.jit(iterate), model.params)


def seed_start(spec: ModelSpec, f: int, shape: tuple[int, int, int], init_noise: float,
               seed: int = 0) -> np.ndarray:
  """Filter f's start `[H, W, C]` float32 pixels (0–255 scale): grey 128 plus uniform noise of
  width `init_noise` (NumPy, seeded by `(seed, f)`)."""
  noise = np.random.default_rng((seed, f)).random(shape)
  return np.asarray(128.0 + (noise - 0.5) * init_noise, np.float32)


def seed_method(model: Model, layer: str, filters: Sequence[int], *, steps: int, size: int,
                step_size: float = 1.0, init_noise: float = 20.0, seed: int = 0,
                iterate=None) -> np.ndarray:
  """The seed algorithm, one filter at a time: grey 128 plus noise, then `steps` times
  `pixels += step_size * normalized_grad` in NumPy. Returns the images `[N, H, W, C]` in the
  model's input space.

  `iterate` is a `seed_gradient(model, layer)` to reuse (and so not compile again).
  """
  iterate = iterate or seed_gradient(model, layer)
  shape = model.spec.input_shape_for(size)
  images = []
  for f in filters:
    x = seed_start(model.spec, f, shape, init_noise, seed)[None]
    for _ in range(steps):
      loss_value, grads_value = iterate(x, np.int32(f))
      x += np.asarray(grads_value) * step_size
    images.append(x[0])
  return np.asarray(model.spec.preprocess(np.stack(images)), np.float32)


def time_seed_method(model: Model, job: Mapping, count: int) -> float:
  """Seconds per filter of the seed method, timed on the first `count` filters of the job after
  one untimed step that compiles its gradient."""
  iterate = seed_gradient(model, job["layer"])
  kwargs = dict(size=job["size"], step_size=job.get("step_size", 1.0),
                init_noise=job.get("init_noise", 20.0), seed=job["seed"], iterate=iterate)
  seed_method(model, job["layer"], [0], steps=1, **kwargs)  # compiles
  start = time.perf_counter()
  seed_method(model, job["layer"], range(count), steps=job["steps"], **kwargs)
  return (time.perf_counter() - start) / count


# --- a whole benchmark -----------------------------------------------------------------------

def jobs_from_config(config: Mapping) -> list[dict]:
  """One job per layer of `config.layer` ("a" or "a,b,c"); the remaining fields are shared."""
  layers = split_names(str(config["layer"]))
  if not layers:
    raise JaxvizError("no layer given: set --config.layer=NAME (or a comma list)")
  base = {k: config[k] for k in config.keys() if k not in MEASUREMENT_FIELDS}
  missing = [k for k in JOB_FIELDS if k not in base]
  if missing:
    raise JaxvizError(f"a bench config needs the fields {', '.join(missing)} "
                      "(see configs/bench_lenet.py)")
  return [{**base, "layer": layer} for layer in layers]


def validate(job: Mapping) -> tuple[ModelSpec, int]:
  """Checks a job before any timing: model, layer, size, settings, filter count."""
  spec = get_spec(job["model"])
  spec.layer(job["layer"])
  spec.input_shape_for(job["size"])
  AscentSettings.from_config(job).validate()
  if job["repeats"] < 1:
    raise JaxvizError(f"repeats must be ≥ 1, got {job['repeats']}")
  count = len(filter_indices(job, objectives.num_filters(spec, job["layer"])))
  return spec, count


def run_benchmark(config: Mapping, progress: Progress = SILENT) -> list[dict]:
  """Times every job of `config` and returns one record per job with at least `KEYS`."""
  jobs = jobs_from_config(config)
  checked = [validate(job) for job in jobs]
  progress(f"matmul peak: {config['peak_size']}² float32, best of {config['peak_trials']}")
  peaks = [matmul_peak(config["peak_size"], config["peak_trials"])]
  progress(f"peak {peaks[-1]:.1f} GFLOP/s")
  measured = []
  for job, (spec, count) in zip(jobs, checked):
    progress(f"{job['model']} {job['layer']}: {count} filters × {job['steps']} steps at "
             f"{job['size']} px, {'fresh process' if config['fresh_process'] else 'in process'}")
    timed = time_job_fresh(job) if config["fresh_process"] else time_job(job, progress)
    baseline_count = min(config["baseline_filters"] or count, count)
    progress(f"{job['layer']}: seed method on {baseline_count} filter(s)")
    per_filter = time_seed_method(make_model(job), job, baseline_count)
    peaks.append(matmul_peak(config["peak_size"], config["peak_trials"]))
    progress(f"{job['layer']}: warm {timed['seconds_warm']:.2f}s, "
             f"{per_filter * count / timed['seconds_warm']:.1f}× the seed method; "
             f"peak {peaks[-1]:.1f} GFLOP/s")
    measured.append((job, spec, timed, per_filter, baseline_count))
  # The peak is the best matmul of the whole run (sampled before and after every job), so a
  # busy moment cannot make the engine look closer to it.
  return [make_record(*m[:3], max(peaks), *m[3:], config) for m in measured]


def make_record(job: Mapping, spec: ModelSpec, timed: Mapping, peak: float, per_filter: float,
                baseline_count: int, config: Mapping) -> dict:
  filters, warm = timed["filters"], timed["seconds_warm"]
  work = flops.job_flop(spec, job["layer"], job["size"], filters, job["steps"]) / 1e9
  settings = AscentSettings.from_config(job)
  fresh = config["fresh_process"]
  return {
      "model": job["model"], "layer": job["layer"], "filters": filters, "steps": job["steps"],
      "size": job["size"],
      "seconds_cold": timed["seconds_cold"], "seconds_warm": warm,
      "filters_per_s": filters / warm, "work_gflop": work,
      "effective_gflops_per_s": work / warm, "peak_gflops_per_s": peak,
      "fraction_of_peak": work / warm / peak,
      "baseline_filters_per_s": 1 / per_filter,
      "speedup_vs_baseline": per_filter * filters / warm,
      "peak_memory_bytes": timed["peak_memory_bytes"], "device": timed["device"],
      # How each number was taken.
      "platform": timed["platform"], "device_count": timed["device_count"],
      "seconds_warm_runs": timed["seconds_warm_runs"],
      "warm_statistic": f"median of {len(timed['seconds_warm_runs'])}",
      "seconds_weights": timed["seconds_weights"],
      "seconds_process": timed.get("seconds_process"),
      "cold_scope": ("fresh process: engine setup + compile + first run (imports, backend "
                     "start-up and weights apart)" if fresh else
                     "first call in this process (imports and backend already warm)"),
      "compilation_cache": bool(job["compilation_cache"]),
      "memory_scope": ("device peak bytes in use" if timed["platform"] != "cpu" else
                       "max RSS of the " + ("fresh job process" if fresh else "whole process")),
      "baseline_filters_timed": baseline_count,
      "baseline_scaled": baseline_count < filters,
      "peak_size": config["peak_size"],
      "random_weights": bool(job["random_weights"]),
      "chunk_size": job["chunk_size"], "loop": settings.loop,
      "conv": timed["conv"],  # who ran the convolutions (xla, onednn, onednn_bf16)
      "channel_only": settings.channel_only, "settings": dataclasses.asdict(settings),
      "load_average_1m": os.getloadavg()[0],  # others' work on the machine skews the times
      "jax_version": jax.__version__,
      "date": datetime.date.today().isoformat(),
  }


# --- output ----------------------------------------------------------------------------------

COLUMNS = (  # (header, key, format)
    ("model", "model", "{}"), ("layer", "layer", "{}"), ("filters", "filters", "{}"),
    ("steps", "steps", "{}"), ("size", "size", "{}"), ("cold s", "seconds_cold", "{:.2f}"),
    ("warm s", "seconds_warm", "{:.2f}"), ("filters/s", "filters_per_s", "{:.2f}"),
    ("GFLOP", "work_gflop", "{:.1f}"), ("GFLOP/s", "effective_gflops_per_s", "{:.1f}"),
    ("of peak", "fraction_of_peak", "{:.2f}"), ("seed filters/s", "baseline_filters_per_s",
                                                "{:.2f}"),
    ("speedup", "speedup_vs_baseline", "{:.1f}×"), ("peak MiB", "peak_memory_bytes", "mib"),
)


def _cell(record: Mapping, key: str, fmt: str) -> str:
  if fmt == "mib":
    return f"{record[key] / 2 ** 20:.0f}"
  return fmt.format(record[key])


def format_table(records: Sequence[Mapping]) -> str:
  """A text table, one row per record, and a footer saying how the numbers were taken."""
  rows = [[h for h, _, _ in COLUMNS]] + [[_cell(r, k, f) for _, k, f in COLUMNS] for r in records]
  widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
  lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(row, widths))) for row in rows]
  if records:
    r = records[0]
    scaled = [x["layer"] for x in records if x["baseline_scaled"]]
    lines += [
        "",
        f"device: {r['device']} · peak {r['peak_gflops_per_s']:.1f} GFLOP/s "
        f"({r['peak_size']}² float32 matmul, best of several) · load average "
        f"{r['load_average_1m']:.1f}",
        f"warm: {r['warm_statistic']} · cold: {r['cold_scope']}, persistent compilation cache "
        f"{'on' if r['compilation_cache'] else 'off'} · memory: {r['memory_scope']}",
        "work: plain-algorithm FLOP (forward to the layer + backward to the image) × filters × "
        "steps · seed: one filter at a time, compiled single-image gradient, Python step loop"
        + (f" (timed on a subset and scaled for {', '.join(scaled)})" if scaled else ""),
    ]
  return "\n".join(lines)


MARKDOWN_HEADER = ("| command | filters | size | cold s | warm s | filters/s | GFLOP | GFLOP/s "
                   "| of peak | seed filters/s | speedup | peak MiB |\n"
                   "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")


def markdown_row(record: Mapping, command: str) -> str:
  """One row under `MARKDOWN_HEADER` for a record measured by `command`."""
  keys = ("filters", "size", "seconds_cold", "seconds_warm", "filters_per_s", "work_gflop",
          "effective_gflops_per_s", "fraction_of_peak", "baseline_filters_per_s",
          "speedup_vs_baseline", "peak_memory_bytes")
  formats = {k: f for _, k, f in COLUMNS}
  cells = [_cell(record, k, formats[k]) for k in keys]
  return f"| `{command}` | " + " | ".join(cells) + " |"


def main_command(config: Mapping, json_lines: bool = False,
                 progress: Progress | None = None) -> list[dict]:
  """`jaxviz bench`: runs the benchmark and prints the table, or one JSON line per job."""
  leave_accelerator_memory_free()
  records = run_benchmark(config, progress or Progress("bench"))
  if json_lines:
    for record in records:
      print(json.dumps(record), flush=True)
  else:
    print(format_table(records), flush=True)
  return records


def _child(job_text: str) -> int:
  """`python -m jaxviz.bench --one JOB`: times one job here and prints its result line."""
  job = json.loads(job_text)
  if job.get("split_cpu", True):
    host_devices.split_cpu()  # as the gallery job does, before JAX starts
  if not job["compilation_cache"]:
    jax.config.update("jax_enable_compilation_cache", False)
  try:
    result = time_job(job, Progress("bench"))
  except JaxvizError as e:
    print(f"jaxviz bench: error: {e}", file=sys.stderr)
    return 2
  print(RESULT_MARK + json.dumps(result), flush=True)
  return 0


if __name__ == "__main__":
  if len(sys.argv) != 3 or sys.argv[1] != "--one":
    sys.exit("usage: python -m jaxviz.bench --one JOB_JSON   (run `jaxviz bench` instead)")
  sys.exit(_child(sys.argv[2]))
