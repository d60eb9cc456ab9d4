"""Measures the rows of BENCHMARKS.md and prints them as Markdown.

    python scripts/bench_table.py                      # every section, about 30 min on 2 CPU cores
    python scripts/bench_table.py --only jobs          # the four preset jobs only
    python scripts/bench_table.py --only filters,size  # the scaling sections
    python scripts/bench_table.py --dry-run            # print the commands, run nothing

Each row is one `jaxviz bench` command, run as written (plus `--json`) in its own process, so
the table's command column reproduces the row. Paste the output over the measured sections of
BENCHMARKS.md. On a GPU machine the same rows run on the GPU; put them under its own heading.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxviz import bench  # noqa: E402

# Sweeps are on block3_conv1 (256 filters, so it has room for the largest count); their warm time
# is one run, and the seed method is timed on 2 filters and scaled.
SWEEP = "--config bench_vgg16_block3_conv1 --config.repeats=1 --config.baseline_filters=2"

SECTIONS = {
    "jobs": ("The issue's jobs (16 filters, 64×64, 20 steps for VGG16; all 50 filters, 28×28, "
             "20 steps for LeNet)", [
                 "jaxviz bench --config bench_lenet",
                 "jaxviz bench --config bench_vgg16_block1_conv2",
                 "jaxviz bench --config bench_vgg16_block3_conv1",
                 "jaxviz bench --config bench_vgg16_block5_conv1",
             ]),
    "conv": ("XLA's convolutions against oneDNN's (`conv`), each job back to back", [
        f"jaxviz bench --config {job} --config.conv={backend}"
        for job in ("bench_lenet", "bench_vgg16_block1_conv2", "bench_vgg16_block3_conv1",
                    "bench_vgg16_block5_conv1") for backend in ("xla", "onednn")]),
    "bf16": ("oneDNN's convolutions in float32 against bfloat16 (`conv=onednn_bf16`)", [
        f"jaxviz bench --config {job} --config.conv={backend}"
        for job in ("bench_vgg16_block3_conv1", "bench_vgg16_block5_conv1")
        for backend in ("onednn", "onednn_bf16")]),
    "split": ("One device for the host against one per core (`split_cpu`), each job back to "
              "back", [
                  f"jaxviz bench --config {job}{flag}"
                  for job in ("bench_lenet", "bench_vgg16_block1_conv2",
                              "bench_vgg16_block3_conv1", "bench_vgg16_block5_conv1")
                  for flag in (" --config.split_cpu=False", "")]),
    "filters": ("Time against filters (VGG16 block3_conv1, 64×64, 20 steps)", [
        f"jaxviz bench {SWEEP} --config.num_filters={n}" for n in (16, 64, 256)]),
    "size": ("Time against image size (VGG16 block3_conv1, 16 filters, 20 steps)", [
        f"jaxviz bench {SWEEP} --config.size={n}" for n in (64, 128, 224)]),
}


def run_row(command: str) -> list[dict]:
  """Runs one `jaxviz bench …` command with --json; its records."""
  args = shlex.split(command)
  assert args[:2] == ["jaxviz", "bench"], command
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
  done = subprocess.run([sys.executable, "-m", "jaxviz.cli", *args[1:], "--json"],
                        stdout=subprocess.PIPE, text=True, env=env, check=True)
  return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def machine() -> str:
  mem = 0
  for line in Path("/proc/meminfo").read_text().splitlines():
    if line.startswith("MemTotal:"):
      mem = int(line.split()[1]) * 1024
  text = (f"{bench.cpu_model()}, {bench.cpu_count()} cores, {mem / 2 ** 30:.0f} GiB RAM; "
          f"{datetime.date.today().isoformat()}")
  try:
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    text += f"; commit {commit}" + (" with uncommitted changes" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    pass
  return text


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--only", default=",".join(SECTIONS),
                      help=f"comma list of sections: {', '.join(SECTIONS)}")
  parser.add_argument("--dry-run", action="store_true", help="print the commands only")
  args = parser.parse_args()
  names = [n.strip() for n in args.only.split(",") if n.strip()]
  unknown = [n for n in names if n not in SECTIONS]
  if unknown:
    parser.error(f"unknown section {unknown[0]!r}; valid: {', '.join(SECTIONS)}")
  if args.dry_run:
    for name in names:
      print("\n".join(SECTIONS[name][1]))
    return 0
  print(f"Machine: {machine()}\n")
  for name in names:
    title, commands = SECTIONS[name]
    rows, devices, extras = [], set(), []
    for command in commands:
      print(f"running: {command}", file=sys.stderr, flush=True)
      for record in run_row(command):
        rows.append(bench.markdown_row(record, command))
        devices.add(record["device"])
        extras.append(f"peak {record['peak_gflops_per_s']:.0f} GFLOP/s, load "
                      f"{record['load_average_1m']:.1f}"
                      + (f", seed timed on {record['baseline_filters_timed']}"
                         if record["baseline_scaled"] else ""))
    print(f"### {title}\n\nDevice: {', '.join(sorted(devices))}. Per row: "
          + "; ".join(extras) + ".\n")
    print(bench.MARKDOWN_HEADER)
    print("\n".join(rows) + "\n", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
