"""Measures the quality rows of QUALITY.md: runs each job with the `jaxviz` command, times it,
and prints one Markdown row per job from the job's own outputs (filters.json, classes.json).

    python scripts/quality_table.py --workdir runs/quality \\
        --mnist-weights lenet-mnist.msgpack --vgg-weights vgg16.h5
    python scripts/quality_table.py --workdir runs/quality --only lenet     # a group of rows
    python scripts/quality_table.py --workdir runs/quality --only vgg16_b5 --presets default

Needs the `jaxviz` command on PATH. LeNet trained on the offline digits is trained and cached by
the first job if missing; the MNIST LeNet and the VGG16 weights are passed as files (see
QUALITY.md for how they were made). Rows of a group whose weights are not given are skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

PRESETS = ("seed", "yosinski", "default")


def jobs(args) -> list[tuple[str, str, list[str]]]:
  """`(group, name, jaxviz arguments)` for every row."""
  rows = []
  lenets = [("digits", [])]
  if args.mnist_weights:
    lenets.append(("mnist", ["--config.dataset=mnist", f"--config.weights={args.mnist_weights}"]))
  for data, weights in lenets:
    for preset in args.presets:
      rows.append(("lenet", f"lenet_{data}_{preset}",
                   ["gallery", "--config", preset, *weights]))
    rows.append(("classes", f"classes_{data}", ["classes", *weights]))
  if args.vgg_weights:
    vgg = ["--config.model=vgg16", f"--config.weights={args.vgg_weights}", "--config.size=128"]
    for layer, group in (("block5_conv1", "vgg16_b5"), ("block3_conv1", "vgg16_b3")):
      for preset in args.presets:
        rows.append((group, f"{group}_{preset}",
                     ["gallery", "--config", preset, *vgg, f"--config.layer={layer}",
                      f"--config.filters={args.vgg_filters}"]))
  return [row for row in rows if not args.only or row[0] in args.only]


def gallery_row(name: str, command: list[str], folder: Path, seconds: float) -> str:
  records = json.loads((folder / "filters.json").read_text())
  live = [r for r in records if not r["dead"]]
  robust = [r["robustness"] for r in live if r["robustness"] is not None]
  activations = ", ".join(f"{r['filter']}: {r['activation']:.1f}" for r in records)
  median = f"{statistics.median(robust):.2f}" if robust else "–"
  return (f"| {name} | {len(live)}/{len(records)} | {median} | {seconds:.0f} s | "
          f"`jaxviz {' '.join(command)}` | {activations if len(records) <= 16 else ''} |")


def classes_row(name: str, command: list[str], folder: Path, seconds: float) -> str:
  records = json.loads((folder / "classes.json").read_text())
  right = sum(r["predicted"] == r["class"] for r in records)
  from_png = sum(r["predicted_from_png"] == r["class"] for r in records)
  return (f"| {name} | {right}/{len(records)} in memory, {from_png}/{len(records)} from the "
          f"PNGs | | {seconds:.0f} s | `jaxviz {' '.join(command)}` | |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, type=Path)
  parser.add_argument("--mnist-weights", default="")
  parser.add_argument("--vgg-weights", default="")
  parser.add_argument("--vgg-filters", default="0-15")
  parser.add_argument("--presets", nargs="+", default=list(PRESETS))
  parser.add_argument("--only", nargs="*", default=[],
                      help="groups: lenet, classes, vgg16_b5, vgg16_b3")
  args = parser.parse_args()
  print("| job | live | median robustness | time | command | activation per filter |")
  print("|---|--:|--:|--:|---|---|")
  for group, name, command in jobs(args):
    out = args.workdir / name
    start = time.time()
    subprocess.run(["jaxviz", *command, "--workdir", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.time() - start
    shown = [c for c in command if not c.startswith("--config.weights")]
    if group == "classes":
      print(classes_row(name, shown, out / "classes", seconds), flush=True)
    else:
      layer = next((c.split("=", 1)[1] for c in command if c.startswith("--config.layer=")),
                   "conv2d_2")
      print(gallery_row(name, shown, out / layer, seconds), flush=True)


if __name__ == "__main__":
  sys.exit(main())
