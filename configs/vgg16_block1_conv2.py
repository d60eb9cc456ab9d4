"""VGG16 `block1_conv2` gallery with the default preset: all filters at 128×128 px, the best 64 on
an 8×8 grid.

    jaxviz fetch-weights vgg16        # once: downloads and converts the Keras ImageNet weights
    jaxviz gallery --config vgg16_block1_conv2 --workdir runs/vgg16_block1_conv2
    jaxviz gallery --config seed --workdir runs/seed_block1_conv2 --config.model=vgg16 \
        --config.layer=block1_conv2 --config.size=128      # the seeds' method on the same layer

Offline, convert a Keras VGG16 file of any layout (`jaxviz convert FILE vgg16.msgpack`) and
pass `--config.weights=vgg16.msgpack`; a Keras file can also be passed directly.
"""

from jaxviz.configs import default


def get_config():
  c = default.get_config()
  c.model = "vgg16"
  c.layer = "block1_conv2"
  c.filters = "all"
  c.max_tiles = 64
  c.size = 128
  return c
