"""How much a filter's result depends on its random start: D independent images per filter.

Runs a preset with `diversity=D` and the diversity term off (`diversity_weight=0`), so each
filter's D images start from different noise and never see each other, then prints each
filter's final activations (sorted) and robustness. A single run's number for a filter is one
draw from this spread; compare presets on spreads, not on single runs.

    python scripts/seed_spread.py --weights vgg16_real.h5 --filters 4,5 --images 8
    python scripts/seed_spread.py --weights vgg16_real.h5 --filters 4,5 --set decay_power=1.0
    python scripts/seed_spread.py --weights vgg16_real.h5 --set exclude_border=1 --score-as \
        vgg16_block5_conv1

With `--score-as CONFIG` the final images are scored with that config's objective (`jaxviz
score`'s numbers), for overrides that change the objective itself, such as `exclude_border`.

The host is split into one device per core first, as `jaxviz gallery` does.
"""

import argparse
import time

import numpy as np

from jaxviz import host_devices


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--weights", required=True, help="VGG16 Keras file or checkpoint")
  parser.add_argument("--config", default="vgg16_block5_conv1", help="a config name")
  parser.add_argument("--filters", default="4,5")
  parser.add_argument("--images", type=int, default=8, help="independent images per filter")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                      help="override a config value (repeatable), e.g. decay_power=1.0")
  parser.add_argument("--score-as", metavar="CONFIG",
                      help="score the final images with this config's objective and robustness")
  args = parser.parse_args()
  host_devices.split_cpu()

  from jaxviz.config import load_config, parse_value
  from jaxviz.engine import AscentSettings, FilterEngine
  from jaxviz.loading import load_model

  config = load_config(args.config)
  for item in args.set:
    name, _, value = item.partition("=")
    config[name] = parse_value(value)  # numbers, True/False, or a word such as "onednn"
  config.diversity, config.diversity_weight = args.images, 0.0
  model = load_model(config.model, args.weights)
  engine = FilterEngine(model, config.layer, AscentSettings.from_config(config), config.size)
  start = time.perf_counter()
  result = engine.run(args.filters, seed=args.seed)
  print(f"{config.layer}, {args.images} images per filter, {' '.join(args.set) or 'no overrides'}:"
        f" {time.perf_counter() - start:.0f} s")
  activations, robustness = result.activations[..., -1], result.robustness
  if args.images == 1:  # one image per filter: no images axis
    activations, robustness = activations[:, None], robustness[:, None]
  if args.score_as:
    scoring = load_config(args.score_as)
    scorer = FilterEngine(model, config.layer, AscentSettings.from_config(scoring), config.size)
    images = np.asarray(result.images).reshape(-1, *engine.image_shape)
    activations, robustness = (
        a.reshape(len(result.filters), args.images)
        for a in scorer.score(images, np.repeat(result.filters, args.images)))
    print(f"  scored as {args.score_as}:")
  for row, f in enumerate(result.filters):
    order = np.argsort(activations[row])
    acts = activations[row, order]
    robs = robustness[row, order]
    print(f"  filter {f}: activation {' '.join(f'{a:.1f}' for a in acts)}; "
          f"robustness {' '.join(f'{r:.2f}' for r in robs)}")


if __name__ == "__main__":
  main()
