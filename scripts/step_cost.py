"""Time per ascent step of presets at one layer, warm, side by side in one process: the engines
alternate for `--rounds` rounds and each reports its best and median run over `--steps`.

    python scripts/step_cost.py --weights vgg16_real.h5                # lucid, pixel; block5_conv1
    python scripts/step_cost.py --weights vgg16_real.h5 --conv onednn  # the steps in float32

Robustness samples and the second pass for dead filters are off, so a run is the steps and one
float32 evaluation of the final images. The host is split into one device per core first, as
`jaxviz gallery` does.
"""

import argparse
import statistics
import time

from jaxviz import host_devices

# "pixel": the seeds' pixel image with Adam and no transforms, the plain engine presets are
# timed against (here and in `scripts/step_vs_frameworks.py`).
PIXEL_OVERRIDES = {"optimizer": "adam", "step_size": 0.05, "normalize_grad": False}


def preset_config(name: str):
  """The config of a preset by name, or of "pixel"."""
  from jaxviz.config import load_config
  c = load_config("seed" if name == "pixel" else name)
  if name == "pixel":
    c.update(PIXEL_OVERRIDES)
  return c


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--weights", required=True, help="VGG16 Keras file or checkpoint")
  parser.add_argument("--layer", default="block5_conv1")
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--filters", default="0-15")
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--conv", default="auto")
  parser.add_argument("--presets", default="lucid,pixel")
  args = parser.parse_args()
  host_devices.split_cpu()

  from jaxviz import onednn
  from jaxviz.engine import AscentSettings, FilterEngine
  from jaxviz.loading import load_model

  model = load_model("vgg16", args.weights)
  engines = {}
  for name in args.presets.split(","):
    c = preset_config(name)
    c.conv = args.conv
    c.steps, c.robustness_samples = args.steps, 0
    settings = AscentSettings.from_config(c)
    engine = FilterEngine(model, args.layer, settings, args.size)
    engine.run(args.filters)  # compile
    engines[name] = engine
  times = {name: [] for name in engines}
  for _ in range(args.rounds):
    for name, engine in engines.items():
      start = time.perf_counter()
      engine.run(args.filters)
      times[name].append((time.perf_counter() - start) / args.steps)
  conv = onednn.resolve(args.conv)
  for name, t in times.items():
    print(f"{name}: {min(t):.3f} s per step best, {statistics.median(t):.3f} median "
          f"({args.layer}, {args.size} px, filters {args.filters}, conv {conv})")


if __name__ == "__main__":
  main()
