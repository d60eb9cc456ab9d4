"""The default with narrower zooms (±15 %) and rotations (±15°) of its window (the default for
a few hours of 2026-12-06, after `wide`): higher activations, lower robustness (QUALITY.md). On
VGG16 `block5_conv1` filters 0–15 its activation is at least Lucent's on each of Lucent's
eight strong filters, where the default's falls below on seven of them; on the whole layer its
median robustness is 0.877 against the default's 0.902.

    jaxviz gallery --config strong --workdir runs/strong
"""

from jaxviz.configs import default


def get_config():
  c = default.get_config()
  c.preset = "strong"
  c.scale = 0.15
  c.rotate = 15.0
  return c
