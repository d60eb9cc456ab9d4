"""The default before `crop_first` (until 2026-12-06): the window cut last (`crop_first=False`)
and wider transforms, shifts ±12 %, zooms ±25 %, rotations ±25°. Against the default
(QUALITY.md): about the same robustness (higher on LeNet (MNIST), the same on VGG16
`block3_conv1`, lower on `block5_conv1`) and lower activations on `block5_conv1`.

    jaxviz gallery --config wide --workdir runs/wide
"""

from jaxviz.configs import default


def get_config():
  c = default.get_config()
  c.preset = "wide"
  c.crop_first = False
  c.jitter = 0.12
  c.scale = 0.25
  c.rotate = 25.0
  return c
