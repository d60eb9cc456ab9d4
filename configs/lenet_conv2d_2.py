"""The main job: a gallery of all 50 filters of LeNet's `conv2d_2`.

    jaxviz gallery --workdir runs/lenet                       # this config is the default
    jaxviz gallery --workdir runs/lenet --config.steps=100    # any field can be overridden

The seeds' ascent (`lenet_seed`) with the regularizers of Yosinski et al. (2015): smaller steps,
L2 decay, a light blur, jitter and clipping of weak pixels give smooth, distinct stroke and edge
patterns instead of sharp gratings. With no weights given, LeNet is trained once on the offline
digits set and cached (about 15 s on 2 CPU cores); the gallery itself takes about a second.
"""

from jaxviz.configs import lenet_seed


def get_config():
  c = lenet_seed.get_config()
  c.steps = 60
  c.step_size = 0.05
  c.decay = 0.01
  c.blur_sigma = 0.5
  c.blur_every = 4
  c.jitter = 1
  c.clip_norm_percentile = 10.0
  return c
