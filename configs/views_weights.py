"""Filter weights of LeNet's first conv layer as tiles, normalized to 0–1 as in the seed.

    jaxviz weights --workdir runs/views                                 # conv2d_1, all filters
    jaxviz weights --workdir runs/views --config.layer=conv2d_2 --config.filters=0-7

Writes WORKDIR/weights/<layer>/: filters.png (one tile per filter; first layer only),
channels.png (each filter's input channels as grey tiles), kernel.npy, weights.json. Seconds.
"""

import ml_collections

from jaxviz.configs import seed


def get_config() -> ml_collections.ConfigDict:
  base = seed.get_config()
  c = ml_collections.ConfigDict()
  c.model = base.model        # registered model name: lenet, vgg16
  c.weights = base.weights    # checkpoint or Keras file; "" = the model's default weights
  c.dataset = base.dataset    # LeNet's default weights are trained on this
  c.layer = ""                # conv layer; "" = the first; "a,b" several; "conv" = every conv
  c.filters = "all"           # "all", or indices and ranges: "0,3,10-19"
  c.labels = False            # print each tile's filter number
  return c
