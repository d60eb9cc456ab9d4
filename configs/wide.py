"""The default before `crop_first` (until 2026-12-06): the window cut last (`crop_first=False`)
and wider transforms, shifts ±12 %, zooms ±25 %, rotations ±25°. Against the default
(QUALITY.md): about the same robustness (a little higher on `block3_conv1` and LeNet (MNIST), a
little lower on `block5_conv1`), lower activations on VGG16 `block5_conv1`.

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
