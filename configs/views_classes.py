"""Class outputs: for each of LeNet's ten digits, an image that maximizes its logit (the softmax
replaced by the identity, as in the seed), all ten in one compiled run with the default preset,
then a second pass started from the first pass's images.

    jaxviz classes --workdir runs/views                                  # the ten digits
    jaxviz classes --workdir runs/views --config.classes=3,8 --config.passes=1

Writes WORKDIR/classes/: classes.png (labelled with the class the model gives each image),
first_pass.png, class_<k>.png (one image per class at the model's size, its true pixels for
bounded parameterizations), images.npy, logits.npy, activations.npy, classes.json. The ascent
fields are those of the gallery.
"""

import ml_collections

from jaxviz.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.get_config()
  for key in ("layer", "filters", "before_relu", "max_tiles", "channel_only", "objective",
              "rescue", "diversity", "diversity_weight", "exclude_border"):
    del c[key]
  c.classes = "all"           # "all", or class indices and ranges: "0,3,7-9"
  c.passes = 2                # passes; each after the first starts from the previous images
  c.loop = "python"           # one compiled step driven from Python: compiles in a second
  c.labels = True             # print "class → predicted" on each tile
  return c
