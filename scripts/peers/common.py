"""What the peer scripts share: the bench job's arguments, and timing a run warm.

Plain Python (no jaxviz, no JAX), so a peer's own environment can run it.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable


def job_parser(description: str) -> argparse.ArgumentParser:
  """The arguments of `jaxviz bench`'s VGG16 jobs: layers, filters, size, steps, repeats."""
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--layers", default="block1_conv2,block3_conv1,block5_conv1")
  parser.add_argument("--filters", type=int, default=16)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=3)
  return parser


def report_warm(run: Callable[[], object], args: argparse.Namespace, layer: str,
                **record) -> None:
  """Runs `run` once to warm up, then `args.repeats` timed times; prints one JSON line with
  `record`, the job and the best and median seconds."""
  run()
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  print(json.dumps({**record, "layer": layer, "filters": args.filters, "size": args.size,
                    "steps": args.steps, "seconds_best": min(times),
                    "seconds_median": statistics.median(times)}), flush=True)
