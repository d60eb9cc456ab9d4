"""One ascent step of jaxviz's engine beside a bare gradient of the same network in JAX and in
PyTorch (Lucent's model), warm, at one layer: where an engine step's time goes.

    python scripts/step_vs_frameworks.py vgg16_real.h5 default,jax,torch
    python scripts/step_vs_frameworks.py vgg16_real.h5 default:128,jax:128,torch:128

Each item is `NAME[:IMAGES]` (16 images when no count is given):

- `default`: the default preset's engine (Fourier image, colour decorrelation, transforms, Adam,
  ReLU rescue); `notransforms`: the same without shifts, zooms and rotations; `pixel`: the
  seeds' pixel image with Adam (0.05) and no transforms, as in `scripts/step_cost.py`;
  `generic`: the default with JAX's own gradients instead of jaxviz's image-only backward
  (`image_only_grad=False`). Robustness samples and the second pass are off; a run is `STEPS`
  steps and one evaluation, timed warm (best of 3).
- `default@P`, `jax@P`: the same under `jax.default_matmul_precision(P)` (`highest`,
  `tensorfloat32`, `bfloat16`).
- `jax`: `jax.grad` of the Flax model's post-ReLU channel means, one channel per image, and an
  update (best of 5 × 10 steps).
- `torch`, `torch_cl`, `torch_fp32`: the same in PyTorch with `scripts/peers/lucent_vgg16.py`'s
  model, on the GPU when there is one (`torch_cl`: channels-last; `torch_fp32`: no TF32).

Prints one line per item: milliseconds per step and per image-step. Needs PyTorch and h5py for
the `torch` items only.
"""

import contextlib
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from jaxviz.engine import AscentSettings, FilterEngine
from jaxviz.loading import load_model
from step_cost import preset_config

LAYER, SIZE, STEPS = "block5_conv1", 128, 32
# name: (preset, overrides); "pixel" is `scripts/step_cost.py`'s: the seeds' pixels with Adam.
ENGINES = {
    "default": ("default", {}),
    "notransforms": ("default", {"jitter": 0.0, "scale": 0.0, "rotate": 0.0}),
    "pixel": ("pixel", {}),
    "generic": ("default", {"image_only_grad": False}),
}


def report(label: str, n: int, seconds_per_step: float, extra: str = "") -> None:
  print(f"{label:28s} {n:4d} images {1e3 * seconds_per_step:8.2f} ms/step "
        f"{1e3 * seconds_per_step / n:7.3f} ms/image-step{extra}", flush=True)


def engine_step(model, name: str, n: int, rounds: int = 3) -> tuple[float, str]:
  preset, overrides = ENGINES[name]
  c = preset_config(preset)
  c.model, c.layer, c.size = "vgg16", LAYER, SIZE
  c.robustness_samples, c.wake, c.steps = 0, False, STEPS
  for key, value in overrides.items():
    setattr(c, key, value)
  engine = FilterEngine(model, LAYER, AscentSettings.from_config(c), SIZE)
  filters = list(range(n))
  start = time.perf_counter()
  engine.run(filters, chunk_size=n)
  cold = time.perf_counter() - start
  warm = []
  for _ in range(rounds):
    start = time.perf_counter()
    engine.run(filters, chunk_size=n)
    warm.append(time.perf_counter() - start)
  return min(warm) / STEPS, f"   (cold run {cold:.1f} s)"


def jax_step(model, n: int, rounds: int = 5) -> tuple[float, str]:
  spec, params = model.spec, model.params
  channels = jnp.arange(n) % spec.output_shape(LAYER, SIZE)[-1]

  def objective(x):
    y = jax.nn.relu(spec.module.apply({"params": params}, x, upto=LAYER))
    return jnp.sum(jnp.mean(y, axis=(1, 2))[jnp.arange(n), channels])

  grad = jax.jit(jax.grad(objective))
  x = jax.random.normal(jax.random.key(0), (n, SIZE, SIZE, 3)) * 30.0
  grad(x).block_until_ready()
  best = float("inf")
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(10):
      x = x + 1e-3 * grad(x)
    x.block_until_ready()
    best = min(best, (time.perf_counter() - start) / 10)
  return best, ""


def torch_step(weights: str, n: int, channels_last: bool, tf32: bool,
               rounds: int = 5) -> tuple[float, str]:
  import torch
  sys.path.insert(0, str(Path(__file__).parent / "peers"))
  from lucent_vgg16 import CaffeVGG16

  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cudnn.allow_tf32 = tf32
  torch.backends.cudnn.benchmark = True
  layout = torch.channels_last if channels_last else torch.contiguous_format
  model = CaffeVGG16(weights, LAYER).to(device).eval().to(memory_format=layout)
  for p in model.parameters():
    p.requires_grad_(False)
  x = torch.rand(n, 3, SIZE, SIZE, device=device).to(memory_format=layout).requires_grad_(True)
  rows = torch.arange(n, device=device)

  def step():
    y = model(x)
    objective = y.mean(dim=(2, 3))[rows, rows % y.shape[1]].sum()
    g, = torch.autograd.grad(objective, x)
    with torch.no_grad():
      x.add_(1e-3 * g)

  def sync():
    if device.type == "cuda":
      torch.cuda.synchronize()

  for _ in range(3):
    step()
  sync()
  best = float("inf")
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(10):
      step()
    sync()
    best = min(best, (time.perf_counter() - start) / 10)
  return best, ""


def main() -> None:
  if len(sys.argv) != 3:
    sys.exit(__doc__)
  weights, items = sys.argv[1], sys.argv[2].split(",")
  model = load_model("vgg16", weights)
  print(f"{LAYER}, {SIZE} px; {jax.devices()[0].device_kind}", flush=True)
  for item in items:
    name, _, count = item.partition(":")
    name, _, precision = name.partition("@")
    n = int(count or 16)
    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
      if name in ENGINES:
        seconds, extra = engine_step(model, name, n)
      elif name == "jax":
        seconds, extra = jax_step(model, n)
      elif name.startswith("torch"):
        seconds, extra = torch_step(weights, n, channels_last=name == "torch_cl",
                                    tf32=name != "torch_fp32")
      else:
        sys.exit(f"unknown item {item!r}: see the usage above")
    report(item, n, seconds, extra)


if __name__ == "__main__":
  main()
