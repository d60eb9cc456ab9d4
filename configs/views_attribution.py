"""Attributions to the input pixels: saliency, guided backpropagation or deconvnet, for the
class LeNet predicts (or given classes, or filters of a layer) on digits of the test set.

    jaxviz attribution --workdir runs/views                              # guided backprop
    jaxviz attribution --workdir runs/views --method saliency
    jaxviz attribution --workdir runs/views --method deconvnet --config.layer=conv2d_2 \\
        --config.filters=0-3

Writes WORKDIR/<method>/: <method>.png (a row per image: the image, then one map per target),
maps.npy (`[N, K, H, W, C]` gradients in the model's input space), attribution.json.
"""

import ml_collections

from jaxviz.configs import seed


def get_config() -> ml_collections.ConfigDict:
  base = seed.get_config()
  c = ml_collections.ConfigDict()
  c.model = base.model        # registered model name: lenet, vgg16
  c.weights = base.weights    # checkpoint or Keras file; "" = the model's default weights
  c.dataset = base.dataset    # LeNet's default weights are trained on this
  c.method = "guided"         # saliency, guided (guided backprop) or deconvnet
  c.images = "digits:0-7"     # image files and/or test examples, comma-separated
  c.invert = False            # use 255 - pixels (dark digits on light paper, for LeNet)
  c.size = 0                  # input side in pixels; 0 = the model's default
  c.layer = ""                # "" = class logits; a layer name = its `filters` at their peaks
  c.filters = "0"             # with `layer`: filter indices and ranges, "0-3"
  c.classes = ""              # without `layer`: classes for every image, "3,8"; "" = top_k
  c.top_k = 1                 # how many predicted classes per image, most likely first
  c.batch_size = 32           # images per compiled chunk; 0 = all at once
  return c
