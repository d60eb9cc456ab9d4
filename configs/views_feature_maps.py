"""Feature maps of an input image: the outputs of LeNet's `conv2d_1` and `conv2d_2` (the last
conv of each block) for a digit of the offline test set.

    jaxviz feature-maps --workdir runs/views                             # digits:0
    jaxviz feature-maps --workdir runs/views --config.images=my_digit.png --config.invert=True
    jaxviz feature-maps --workdir runs/vgg --config.model=vgg16 --config.images=bird.jpg

Writes WORKDIR/feature-maps/<image>/: input.png, and <layer>.png and <layer>.npy
(`[H', W', C]`) per layer. All layers come from one forward pass. Seconds.
"""

import ml_collections

from jaxviz.configs import seed


def get_config() -> ml_collections.ConfigDict:
  base = seed.get_config()
  c = ml_collections.ConfigDict()
  c.model = base.model        # registered model name: lenet, vgg16
  c.weights = base.weights    # checkpoint or Keras file; "" = the model's default weights
  c.dataset = base.dataset    # LeNet's default weights are trained on this
  c.images = "digits:0"       # image files and/or test examples: "a.png,digits:3-5"
  c.invert = False            # use 255 - pixels (dark digits on light paper, for LeNet)
  c.size = 0                  # input side in pixels; 0 = the model default (LeNet 28, VGG16 224)
  c.layer = ""                # layers; "" = the last conv before each pooling layer
  c.max_channels = 64         # channels shown per layer (0 = all), as the seed shows 64
  c.labels = False            # print each tile's channel number
  return c
