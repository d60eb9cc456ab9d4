"""The PyTorch peer of `jaxviz bench`'s VGG16 jobs: the seeds' method in PyTorch eager, all
images in one batch, on the same work (VGG16 conv stack with He-normal weights and zero biases,
16 filters, 64×64, 20 steps of the normalized gradient, image i maximizing the mean of channel i
of the layer's post-ReLU output).

Needs PyTorch (not a jaxviz dependency): `pip install torch`. Prints one JSON line per layer with
the best and median warm time of `--repeats` runs after one warm-up run.

    python scripts/peers/pytorch_eager.py --layers block1_conv2,block3_conv1,block5_conv1
    python scripts/peers/pytorch_eager.py --channels-last
"""

import torch

from common import job_parser, report_warm

# VGG16's convolutions, block by block: (name, output channels); a 2×2 max pool after each block.
VGG16 = [[("block1_conv1", 64), ("block1_conv2", 64)],
         [("block2_conv1", 128), ("block2_conv2", 128)],
         [("block3_conv1", 256), ("block3_conv2", 256), ("block3_conv3", 256)],
         [("block4_conv1", 512), ("block4_conv2", 512), ("block4_conv3", 512)],
         [("block5_conv1", 512), ("block5_conv2", 512), ("block5_conv3", 512)]]


def stack_up_to(layer: str) -> torch.nn.Sequential:
  """VGG16 from the input to `layer`'s ReLU; He-normal kernels, zero biases, no gradients."""
  modules, channels = [], 3
  for b, block in enumerate(VGG16):
    if b:
      modules.append(torch.nn.MaxPool2d(2))
    for name, out in block:
      conv = torch.nn.Conv2d(channels, out, 3, padding=1)
      torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
      torch.nn.init.zeros_(conv.bias)
      modules += [conv, torch.nn.ReLU()]
      channels = out
      if name == layer:
        model = torch.nn.Sequential(*modules).eval()
        for p in model.parameters():
          p.requires_grad_(False)
        return model
  raise ValueError(f"unknown layer {layer}")


def ascend(model, x: torch.Tensor, steps: int) -> torch.Tensor:
  """`steps` normalized-gradient steps for every image at once; image i maximizes channel i."""
  index = torch.arange(x.shape[0])
  for _ in range(steps):
    x = x.detach().requires_grad_(True)
    out = model(x)
    objective = out[index, index].mean(dim=(1, 2)).sum()
    (g,) = torch.autograd.grad(objective, x)
    norm = g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-5
    x = x + g / norm
  return x.detach()


def main() -> None:
  parser = job_parser(__doc__.split("\n\n")[0])
  parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
  parser.add_argument("--channels-last", action="store_true")
  args = parser.parse_args()
  if args.threads:
    torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  for layer in args.layers.split(","):
    model = stack_up_to(layer)
    x = 128 + 20 * (torch.rand(args.filters, 3, args.size, args.size) - 0.5)
    if args.channels_last:
      model = model.to(memory_format=torch.channels_last)
      x = x.contiguous(memory_format=torch.channels_last)
    report_warm(lambda: ascend(model, x, args.steps), args, layer,
                system=f"pytorch {torch.__version__} eager", channels_last=args.channels_last,
                threads=torch.get_num_threads())


if __name__ == "__main__":
  main()
