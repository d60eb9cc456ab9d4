"""`strong` with its window cut after the shifts, zooms, rotations and frame instead of before
(`crop_first=False`): every step sees content running to the view's edges, against the
network's zero padding. On VGG16 `block5_conv1` its activations are higher than `strong`'s,
its robustness lower (QUALITY.md): pictures that excite the unit most where they stand, less so
when moved.

    jaxviz gallery --config sharp --workdir runs/sharp
"""

from jaxviz.configs import strong


def get_config():
  c = strong.get_config()
  c.preset = "sharp"
  c.crop_first = False
  return c
