"""Where a warm `jaxviz bench` job spends its time: XLA's profiler over one warm run, summed per
compiled operation.

    python scripts/profile_ops.py --config bench_vgg16_block3_conv1
    python scripts/profile_ops.py --config bench_lenet --top 15
    python scripts/profile_ops.py --config bench_vgg16_block5_conv1 --config.conv=xla

Prints the wall time of the profiled run, the time per kind of operation (oneDNN convolutions
called through the FFI, XLA's convolutions and dots, everything else) and the operations that
took longest, with how often each ran. To see what an operation computes, dump the compiled
program (`XLA_FLAGS="--xla_dump_to=DIR --xla_dump_hlo_as_text"`) and look its name up in
`DIR/*_chunk_program.cpu_after_optimizations.txt`. Profiling adds a little time per operation,
so compare profiles with each other, not with `jaxviz bench`.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from jaxviz import bench, cli  # noqa: E402
from jaxviz.config import apply_overrides, load_config  # noqa: E402
from jaxviz.engine import AscentSettings, FilterEngine  # noqa: E402
from jaxviz.errors import JaxvizError  # noqa: E402


def kind(name: str) -> str:
  """The kind of a compiled operation, from its name in the trace."""
  if name.startswith("ffi_call"):
    return "oneDNN convolution (FFI)"
  if name.startswith(("ynn_fusion", "convolution", "dot")):
    return "XLA library call (conv, dot, pool)"
  return "other"


def operation_times(trace_dir: str) -> tuple[collections.Counter, collections.Counter]:
  """Total microseconds and counts per compiled operation in the trace under `trace_dir`."""
  path = next(Path(trace_dir).rglob("*.trace.json.gz"))
  trace = json.loads(gzip.open(path).read())
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  total, count = collections.Counter(), collections.Counter()
  for event in events:
    name = event.get("name", "")
    # Python frames start with "$"; executor, thread-pool and loop events contain the others.
    if (event.get("ph") != "X" or name.startswith("$") or "Thunk" in name or "Slinky" in name
        or name.startswith("while")):
      continue
    total[name] += event.get("dur", 0)
    count[name] += 1
  return total, count


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="bench_lenet", help="a bench config (jaxviz/configs)")
  parser.add_argument("--top", type=int, default=25, help="operations to list")
  args, rest = parser.parse_known_args(argv)
  try:
    config = apply_overrides(load_config(args.config), cli.split_overrides(rest))
  except JaxvizError as e:
    parser.error(str(e))
  job = bench.jobs_from_config(config)[0]
  model = bench.make_model(job)
  engine = FilterEngine(model, job["layer"], AscentSettings.from_config(job), job["size"])
  filters = bench.filter_indices(job, engine.num_filters)
  engine.run(filters, seed=0)  # compile and warm up
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      start = time.perf_counter()
      engine.run(filters, seed=0)
      wall = time.perf_counter() - start
    total, count = operation_times(trace_dir)
  print(f"{job['model']} {job['layer']}: {len(filters)} filters × {job['steps']} steps at "
        f"{job['size']} px, warm run {wall:.2f} s (profiled)")
  kinds = collections.Counter()
  for name, us in total.items():
    kinds[kind(name)] += us
  for name, us in kinds.most_common():
    print(f"  {name:28s} {us / 1e6:7.2f} s")
  print(f"\n{'ms':>9}  {'calls':>6}  operation")
  for name, us in total.most_common(args.top):
    print(f"{us / 1e3:9.1f}  {count[name]:6d}  {name}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
