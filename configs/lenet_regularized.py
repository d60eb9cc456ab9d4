"""LeNet `conv2d_2` with the regularizers of Yosinski et al.: smoother, sparser strokes.

    jaxviz gallery --config lenet_regularized --workdir runs/lenet_reg
"""

from jaxviz.configs import lenet_conv2d_2


def get_config():
  c = lenet_conv2d_2.get_config()
  c.steps = 60
  c.step_size = 0.05
  c.decay = 0.01
  c.blur_sigma = 0.5
  c.blur_every = 4
  c.jitter = 1
  c.clip_norm_percentile = 10.0
  return c
