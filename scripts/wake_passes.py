"""The second pass for dead filters (`jaxviz.wake`), each of its parameterizations on its own.

Runs each pass of `--passes` on all of `--filters` (not only on those an earlier pass left
dead, as a gallery does) and prints, per pass, which filters it wakes, their activation and
robustness, then what the chain in that order gives. A filter's second pass does not depend on
the main pass's image or on the other filters, so these are the gallery's results for filters
its main pass leaves dead.

    python scripts/wake_passes.py --weights vgg16_real.h5 --filters 0,8,9,11,13,14
    python scripts/wake_passes.py --weights vgg16_real.h5 --filters 0,8,9 --passes fourier \\
        --set step_size=0.1 --png fourier.png

`--set NAME=VALUE` overrides a setting of the passes themselves (after `wake.wake_settings`),
e.g. `lift=0.75` or `steps=48`; `--png` writes each pass's images in a row, filters in order.

The host is split into one device per core first, as `jaxviz gallery` does.
"""

import argparse
import dataclasses
import time

import numpy as np

from jaxviz import host_devices


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--weights", required=True, help="VGG16 Keras file or checkpoint")
  parser.add_argument("--config", default="vgg16_block5_conv1", help="a config name")
  parser.add_argument("--filters", default="0,8,9,11,13,14")
  parser.add_argument("--passes", default="fourier,pixel", help="in the chain's order")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                      help="override a setting of the passes (repeatable), e.g. lift=0.75")
  parser.add_argument("--png", help="write the passes' images here, a row per pass")
  args = parser.parse_args()
  host_devices.split_cpu()

  import jax
  from PIL import Image

  from jaxviz import render, wake
  from jaxviz.config import load_config, parse_value
  from jaxviz.engine import AscentSettings, FilterEngine
  from jaxviz.loading import load_model
  from jaxviz.ranges import parse_indices

  overrides = {name: parse_value(value)
               for name, _, value in (item.partition("=") for item in args.set)}
  config = load_config(args.config)
  model = load_model(config.model, args.weights)
  engine = FilterEngine(model, config.layer, AscentSettings.from_config(config), config.size)
  filters = parse_indices(args.filters, engine.num_filters)
  passes = wake.parse_passes(args.passes)
  group = wake.group_size(len(filters), jax.local_device_count(), len(filters))

  rows, results = [], {}
  for p in passes:
    start = time.perf_counter()
    settings = dataclasses.replace(wake.wake_settings(engine.settings, p), **overrides)
    result = FilterEngine(model, config.layer, settings, config.size).run(
        filters, seed=args.seed, chunk_size=group)
    seconds = time.perf_counter() - start
    results[p] = result
    activation, live = result.activations[:, -1], ~wake.dead_images(result)
    print(f"{p}: {seconds:.1f} s, woken {live.sum()}/{len(filters)}, activation of the woken "
          f"median {np.median(activation[live]) if live.any() else float('nan'):.3g}")
    print("  " + "  ".join(f"{f}: {a:.3g}/{r:.2f}" if alive else f"{f}: dead"
                           for f, a, r, alive in zip(filters, activation, result.robustness,
                                                     live)))
    rows.append(np.stack([render.pixels_uint8(x) for x in model.spec.to_display(result.images)]))
  woken, dead = {}, list(filters)
  for p in passes:
    live = dict(zip(filters, ~wake.dead_images(results[p])))
    woken[p] = [f for f in dead if live[f]]
    dead = [f for f in dead if not live[f]]
  print("the chain " + " → ".join(passes) + ": " + ", ".join(
      f"{len(woken[p])} woken in {p}" for p in passes) + f", {len(dead)} still dead"
      + (f" ({', '.join(map(str, dead))})" if dead else ""))
  if args.png:
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(args.png)


if __name__ == "__main__":
  main()
