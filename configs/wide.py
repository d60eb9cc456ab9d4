"""The default before `crop_first` (until 2026-12-06): `sharp` (the window cut last) with wider
transforms, shifts ±12 %, zooms ±25 %, rotations ±25°. Against the default (QUALITY.md): on
VGG16 `block5_conv1` higher activations and a lower robustness (the whole layer: 0.868 against
0.902), on `block3_conv1` and LeNet (MNIST) a lower robustness too.

    jaxviz gallery --config wide --workdir runs/wide
"""

from jaxviz.configs import sharp


def get_config():
  c = sharp.get_config()
  c.preset = "wide"
  c.jitter = 0.12
  c.scale = 0.25
  c.rotate = 25.0
  return c
