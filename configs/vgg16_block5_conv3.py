"""VGG16 `block5_conv3` gallery with the seeds' settings: 128×128 px, 20 steps, the first
200 of its 512 filters, the best 64 on an 8×8 grid. Weights as in `vgg16_block5_conv1`.

    jaxviz gallery --config vgg16_block5_conv3 --workdir runs/vgg16_block5_conv3
"""

from jaxviz.configs import lenet_seed


def get_config():
  c = lenet_seed.get_config()
  c.model = "vgg16"
  c.layer = "block5_conv3"
  c.filters = "0-199"
  c.max_tiles = 64
  c.size = 128
  c.steps = 20
  return c
