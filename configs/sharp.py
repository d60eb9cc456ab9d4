"""The default with narrower transforms: shifts ±8 %, zooms ±15 %, rotations ±15°. On VGG16
`block5_conv1` its activations are higher than the default's (and than Lucent's on every filter
Lucent brings to life), its robustness lower (QUALITY.md): pictures that excite the unit most
where they stand, less so when moved.

    jaxviz gallery --config sharp --workdir runs/sharp
"""

from jaxviz.configs import default


def get_config():
  c = default.get_config()
  c.preset = "sharp"
  c.jitter = 0.08
  c.scale = 0.15
  c.rotate = 15.0
  return c
