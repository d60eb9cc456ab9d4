"""Grad-CAM heatmaps on digits of the offline test set, for LeNet's three most likely classes.

    jaxviz gradcam --workdir runs/views                                  # digits:0-7, top 3
    jaxviz gradcam --workdir runs/views --config.images=digits:0-99 --config.top_k=1
    jaxviz gradcam --workdir runs/views --config.classes=3,8             # given classes

Writes WORKDIR/gradcam/: gradcam.png (a row per image: the image, then one overlay per class,
labelled with class and probability), heatmaps.npy (`[N, K, H, W]` in [0, 1]), gradcam.json.
"""

import ml_collections

from jaxviz.configs import seed


def get_config() -> ml_collections.ConfigDict:
  base = seed.get_config()
  c = ml_collections.ConfigDict()
  c.model = base.model        # registered model name: lenet, vgg16 (with its top)
  c.weights = base.weights    # checkpoint or Keras file; "" = the model's default weights
  c.dataset = base.dataset    # LeNet's default weights are trained on this
  c.images = "digits:0-7"     # image files and/or test examples, comma-separated
  c.invert = False            # use 255 - pixels (dark digits on light paper, for LeNet)
  c.size = 0                  # input side in pixels; 0 = the model's default
  c.classes = ""              # classes for every image, "3,8"; "" = each image's top_k
  c.top_k = 3                 # how many predicted classes per image, most likely first
  c.layer = ""                # conv layer; "" = the last one before the classifier
  c.weighting = "gradcam"     # gradcam (mean gradient per channel) or gradcam++
  c.alpha = 0.5               # opacity of the heatmap over the image
  c.batch_size = 32           # images per compiled chunk; 0 = all at once
  return c
