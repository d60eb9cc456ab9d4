"""VGG16 `block5_conv1` gallery with the seeds' settings: 128×128 px, 20 steps of the
normalized gradient, the first 200 of its 512 filters, the best 64 on an 8×8 grid (as in
"How convolutional neural networks see the world").

    jaxviz fetch-weights vgg16        # once: downloads and converts the Keras ImageNet weights
    jaxviz gallery --config vgg16_block5_conv1 --workdir runs/vgg16_block5_conv1
    jaxviz gallery --config vgg16_block5_conv1 --workdir runs/b5 --config.filters=all

Offline, convert a Keras VGG16 file of any layout (`jaxviz convert FILE vgg16.msgpack`) and
pass `--config.weights=vgg16.msgpack`; a Keras file can also be passed directly.
"""

from jaxviz.configs import lenet_seed


def get_config():
  c = lenet_seed.get_config()
  c.model = "vgg16"
  c.layer = "block5_conv1"
  c.filters = "0-199"   # the seeds scan the first 200 filters ...
  c.max_tiles = 64      # ... and show the best 64
  c.size = 128
  c.steps = 20
  return c
