"""Lucid's defaults (Olah et al., "Feature Visualization", Distill 2017): a decorrelated Fourier
image squashed by a sigmoid, Lucid's standard transforms (pad 12, jitter 8, scale 0.9–1.1,
rotate ±10°, jitter 4 at 128 px; here the pad and both jitters are one shift of up to 9 % of the
side with the neutral colour moving in, and all four are one resampling at the image's own
size), Adam 0.05 for 512 steps, the post-ReLU channel mean with ReLU rescue.

    jaxviz gallery --config lucid --workdir runs/lucid
"""

from jaxviz.configs import seed


def get_config():
  c = seed.get_config()
  c.preset = "lucid"
  c.parameterization = "fourier"
  c.optimizer = "adam"
  c.step_size = 0.05
  c.normalize_grad = False
  c.steps = 512
  c.jitter = 0.09            # (8 + 4) / 128 of the side
  c.scale = 0.1
  c.rotate = 10.0
  c.follow_relu = True
  c.rescue = True
  return c
