"""Pixels with the regularizers of Yosinski et al. (2015), "Understanding Neural Networks
Through Deep Visualization": the seeds' ascent with smaller steps, L2 decay, a light blur,
jitter and clipping of weak pixels.

    jaxviz gallery --config yosinski --workdir runs/yosinski
"""

from jaxviz.configs import seed


def get_config():
  c = seed.get_config()
  c.preset = "yosinski"
  c.steps = 60
  c.step_size = 12.0         # grey levels per step
  c.decay = 0.01
  c.blur_sigma = 0.5
  c.blur_every = 4
  c.jitter = 0.04            # ±1 pixel on LeNet's 28, ±9 on VGG16's 224
  c.clip_norm_percentile = 10.0
  return c
