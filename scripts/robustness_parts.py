"""Where a gallery's robustness goes: each held-out transform alone, and the image area it keeps.

`robustness` in filters.json is the activation under 16 held-out draws of shift, zoom and
rotation together, over the activation of the image as it is. This script takes a finished
gallery folder and reports, per filter, the same ratio under each part alone (the same draws
of that part), the half-pixel shift (pure bilinear blur), the image with its outer 3 % of the
side made neutral ("edge band": how much of the activation the content at the very border
carries, where it meets the network's zero padding), and the mean fraction of the image that
stays in the frame (what the neutral border replaces is lost to any full-frame texture):

    python scripts/robustness_parts.py runs/b5/block5_conv1 --min-activation 20
    python scripts/robustness_parts.py runs/b5/block5_conv1 --pixels runs/lucent/pixels_512.npy

With `--pixels`, the images are another tool's pixels `[N, H, W, C]` (0–255, as `jaxviz score`
reads them), one for each filter of the folder's filters.json in its order, measured with the
folder's model, weights and layer; "reported" is then left empty.

Reads `config.json` (model, weights, layer, settings), `filters.json` and `images.npy` of the
folder. Prints a Markdown table: one row per filter, then the medians; "reported" is filters.json's
robustness, which "all three" recomputes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import ascent, transforms
from jaxviz.errors import JaxvizError
from jaxviz.jobs.score import read_pixels
from jaxviz.loading import load_model


EDGE_BAND = 0.03  # "edge band": the outer 3 % of the side (4 pixels at 128) set to neutral


def ratios(model, settings: ascent.AscentSettings, layer: str, images: np.ndarray,
           filters: list[int], samples: int) -> dict[str, np.ndarray]:
  """`{part: [F] mean activation under that part / activation}` for images `[F, H, W, C]`
  (model input) of `filters`; also "activation" `[F]` and "area kept" (the same for all)."""
  # The backend `auto` stands for here, every sample in float32. `ascent.evaluate` runs the
  # held-out samples on the steps' convolutions (bfloat16 where they use it), which moved the
  # robustness by at most 0.0005 on VGG16 (QUALITY.md); on LeNet the two are the same.
  a = ascent.make_ascent(model.spec, layer, dataclasses.replace(settings, conv="auto"),
                         images.shape[1])
  hp = {k: jnp.asarray(v) for k, v in settings.hyperparameters().items()}
  held_out = {k: jnp.asarray(v) for k, v in transforms.ROBUSTNESS_HP.items()}
  all_three = transforms.robustness_transform()
  base_key = jax.random.key(transforms.ROBUSTNESS_SEED)
  activation = jax.jit(lambda x, unit: ascent.reported_activation(a, model.params, x, unit, hp))

  def under(fn, image, unit):
    moved = jnp.stack([fn(jax.random.fold_in(base_key, i), image) for i in range(samples)])
    return float(jnp.mean(activation(moved, unit)))

  x = jnp.asarray(images)
  units = [jnp.int32(f) for f in filters]
  plain = np.array([float(activation(x[i:i + 1], u)[0]) for i, u in enumerate(units)])
  out = {}
  out["all three"] = np.array([under(all_three, x[i], u) for i, u in enumerate(units)]) / plain
  for part in transforms.robustness_chain():
    chain = transforms.compose([part])
    fn = lambda key, image, chain=chain: chain(key, image, held_out)
    out[part.name] = np.array([under(fn, x[i], u) for i, u in enumerate(units)]) / plain
  half = jnp.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
  out["half pixel"] = np.array([float(activation(transforms.sample_affine(x[i], half)[None],
                                                 u)[0]) for i, u in enumerate(units)]) / plain
  band = max(1, round(EDGE_BAND * images.shape[1]))
  inside = jnp.zeros(images.shape[1:3] + (1,)).at[band:-band, band:-band].set(1.0)
  out["edge band"] = np.array([float(activation((x[i] * inside)[None], u)[0])
                               for i, u in enumerate(units)]) / plain
  ones = jnp.ones(images.shape[1:3] + (1,))
  out["area kept"] = np.full(len(filters), np.mean(
      [float(jnp.mean(all_three(jax.random.fold_in(base_key, i), ones))) for i in range(samples)]))
  out["activation"] = plain
  return out


def other_images(model, path: Path, records: list[dict], size: int
                 ) -> tuple[np.ndarray, list[dict]]:
  """Pixels from `path` `[N, H, W, C]`, read and checked as `jaxviz score` reads them, one per
  filter of `records`, as model input; and records for them whose activation is still to be
  measured (no reported robustness)."""
  pixels = read_pixels(str(path), model.spec, size)
  if len(pixels) != len(records):
    raise JaxvizError(f"{str(path)!r} holds {len(pixels)} images for the {len(records)} filters "
                      "of filters.json: give one image per filter, in its order")
  images = np.asarray(model.spec.pixels_to_input(jnp.asarray(pixels)), np.float32)
  return images, [{"filter": r["filter"], "dead": False, "activation": np.inf,
                   "robustness": np.nan} for r in records]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folder", type=Path, help="a gallery's layer folder (has filters.json)")
  parser.add_argument("--min-activation", type=float, default=0.0,
                      help="only filters whose activation is above this")
  parser.add_argument("--samples", type=int, default=16)
  parser.add_argument("--pixels", type=Path, help="another tool's pixels, one per filter")
  args = parser.parse_args()
  try:
    config = json.loads((args.folder / "config.json").read_text())
    records = json.loads((args.folder / "filters.json").read_text())
    images = np.load(args.folder / "images.npy", allow_pickle=False)
  except (OSError, ValueError) as e:
    print(f"error: {args.folder} is not a finished gallery folder ({e}); pass the layer "
          "folder of a `jaxviz gallery` run, e.g. runs/b5/block5_conv1", file=sys.stderr)
    return 2
  images = images[:, 0] if images.ndim == 5 else images  # the first image of each filter
  try:
    model = load_model(config["model"], config["weights"] or None, dataset=config["dataset"])
    if args.pixels:
      images, records = other_images(model, args.pixels, records, images.shape[1])
    keep = [i for i, r in enumerate(records)
            if not r["dead"] and r["activation"] > args.min_activation]
    if not keep:
      print("error: no live filter above --min-activation", file=sys.stderr)
      return 2
    settings = ascent.AscentSettings.from_config(config)
    with np.errstate(divide="ignore", invalid="ignore"):  # other pixels may be dead
      got = ratios(model, settings, config["layer"], images[keep],
                   [records[i]["filter"] for i in keep], args.samples)
    got["reported"] = np.array([records[i]["robustness"] for i in keep], dtype=float)
  except JaxvizError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  live = got["activation"] > max(args.min_activation, 0.0)  # other pixels: measured only now
  keep = [i for i, ok in zip(keep, live) if ok]
  got = {name: values[live] for name, values in got.items()}
  columns = ["activation", "reported", "all three", "shift", "scale", "rotate", "half pixel",
             "edge band", "area kept"]
  print("| filter | " + " | ".join(columns) + " |")
  print("|--:|" + "--:|" * len(columns))
  for row, i in enumerate(keep):
    cells = [f"{got['activation'][row]:.1f}"] + [
        f"{got[c][row]:.2f}" if np.isfinite(got[c][row]) else "–" for c in columns[1:]]
    print(f"| {records[i]['filter']} | " + " | ".join(cells) + " |")
  medians = [f"{np.median(got[c]):.2f}" if np.all(np.isfinite(got[c])) else "–"
             for c in columns[1:]]
  print("| median | | " + " | ".join(medians) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
