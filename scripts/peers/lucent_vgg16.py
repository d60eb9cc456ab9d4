"""Lucent, the PyTorch port of Lucid, on the same VGG16 weights, filters and size as a jaxviz
gallery: the peer run for QUALITY.md's comparison, written so that jaxviz can score it.

Lucent 0.1.8 with its defaults (Fourier + decorrelated colour, `transform.standard_transforms`,
Adam 0.05), one image per filter, all filters in one batch, the post-ReLU channel mean of each
(`objectives.channel`); the image is fed to the model at its own size (`fixed_image_size`, no
upsampling to 224). The model is VGG16's conv stack in PyTorch with the weights of a Keras VGG16
file (the layout `jaxviz convert` reads) and Keras' caffe preprocessing inside the model, so
Lucent's [0, 1] RGB image means the same pixels as jaxviz's.

Needs PyTorch, torch-lucent 0.1.8 and h5py (not jaxviz dependencies):

    python scripts/peers/lucent_vgg16.py vgg16_real.h5 runs/lucent --filters 0-15 --steps 128,512

Writes `OUT/pixels_<steps>.npy` (float32 `[F, H, W, 3]` RGB on the 0–255 scale: the images at
those step counts), `OUT/filters.json` (the filters) and `OUT/run.json` (seconds for all the
steps, the untransformed activation Lucent's own model gives each final image). Score them with
jaxviz's evaluator: `jaxviz score --config vgg16_block5_conv1 --config.weights=vgg16_real.h5
--config.filters=0-15 OUT/pixels_512.npy`.
"""

import argparse
import json
import time
from collections import OrderedDict
from pathlib import Path

import h5py
import numpy as np
import torch
from lucent.optvis import objectives, param, render

BLOCKS = {1: 2, 2: 2, 3: 3, 4: 3, 5: 3}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class CaffeVGG16(torch.nn.Module):
  """VGG16's conv stack up to `last` (NCHW), reading RGB in [0, 1] and preprocessing it as
  Keras does (caffe: BGR, 0–255, minus the ImageNet channel means). Each conv's ReLU is its own
  module `<conv>_relu`, so Lucent can hook the post-ReLU map."""

  def __init__(self, weights: str, last: str):
    super().__init__()
    layers = OrderedDict()
    with h5py.File(weights, "r") as f:
      for block, convs in BLOCKS.items():
        for i in range(1, convs + 1):
          name = f"block{block}_conv{i}"
          group = f[name]
          names = _datasets(group)
          kernel = next(np.asarray(group[k]) for k in names if "_W" in k or "kernel" in k)
          bias = next(np.asarray(group[k]) for k in names if "_b" in k or "bias" in k)
          conv = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3], 3, padding=1)
          conv.weight.data = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
          conv.bias.data = torch.from_numpy(bias.copy())
          layers[name] = conv
          layers[f"{name}_relu"] = torch.nn.ReLU()
          if name == last:
            break
          if i == convs:
            layers[f"block{block}_pool"] = torch.nn.MaxPool2d(2, 2)
        if last in layers:
          break
    if last not in layers:
      raise SystemExit(f"error: {last} is not a VGG16 conv layer")
    self.layers = torch.nn.Sequential(layers)
    self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1))

  def forward(self, rgb01):
    bgr = rgb01.flip(1) * 255.0 - self.mean
    return self.layers(bgr)


def _datasets(group):
  names = []
  group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
  return names


def parse_filters(text: str) -> list[int]:
  out = []
  for part in text.split(","):
    lo, _, hi = part.partition("-")
    out.extend(range(int(lo), int(hi or lo) + 1))
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("weights", help="a Keras VGG16 weights file (.h5)")
  parser.add_argument("out", type=Path)
  parser.add_argument("--layer", default="block5_conv1")
  parser.add_argument("--filters", default="0-15")
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--steps", default="128,512", help="step counts to keep images at")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  torch.manual_seed(args.seed)
  filters = parse_filters(args.filters)
  thresholds = sorted(int(s) for s in args.steps.split(","))
  # Lucent puts its image parameters on the first GPU when there is one; the model goes there too.
  device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
  model = CaffeVGG16(args.weights, args.layer).to(device).eval()
  for p in model.parameters():
    p.requires_grad_(False)
  hooked = f"layers_{args.layer}_relu"
  objective = sum(objectives.channel(hooked, f, batch=i) for i, f in enumerate(filters))
  start = time.perf_counter()
  kept = render.render_vis(
      model, objective, lambda: param.image(args.size, batch=len(filters)),
      thresholds=tuple(thresholds), preprocess=False, fixed_image_size=args.size,
      show_image=False, progress=False)
  if device.type == "cuda":
    torch.cuda.synchronize()
  seconds = time.perf_counter() - start
  args.out.mkdir(parents=True, exist_ok=True)
  for steps, image in zip(thresholds, kept):
    np.save(args.out / f"pixels_{steps}.npy", (np.asarray(image) * 255.0).astype(np.float32))
  with torch.no_grad():
    final = torch.from_numpy(np.asarray(kept[-1])).permute(0, 3, 1, 2).float().to(device)
    maps = model(final)
    activation = [float(maps[i, f].mean()) for i, f in enumerate(filters)]
  (args.out / "filters.json").write_text(json.dumps(filters))
  (args.out / "run.json").write_text(json.dumps({
      "lucent": "0.1.8", "torch": torch.__version__, "layer": args.layer, "size": args.size,
      "steps": thresholds, "seconds": seconds, "threads": torch.get_num_threads(),
      "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
      "activation": activation}, indent=1))
  print(json.dumps({"seconds": round(seconds, 1), "activation": [round(a, 2) for a in activation]}))


if __name__ == "__main__":
  main()
