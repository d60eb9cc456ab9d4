"""The atlas: every conv layer of the model (all filters) with the default preset, the class
outputs for models with a classifier top, and a static HTML site over it all.

    jaxviz atlas --workdir runs/atlas                         # LeNet, this config is the default
    jaxviz atlas --workdir runs/quick --config.steps=16 --config.filters=0-7
    jaxviz atlas --workdir runs/vgg --config.model=vgg16 --config.size=128 --config.weights=vgg16.h5

Writes the galleries to WORKDIR/<layer>/ (as `jaxviz gallery --config.layer=conv` does, and
resumable the same way), the class images to WORKDIR/classes/ (as `jaxviz classes`), and the
site to WORKDIR/atlas/index.html. The gallery fields are those of `default`; `layer` and
`filters` choose the layers and the filters of each.
"""

import ml_collections

from jaxviz.configs import default


def get_config() -> ml_collections.ConfigDict:
  c = default.get_config()
  c.layer = "conv"            # every conv layer; or a comma list of conv layers
  # The classes section (models with a classifier top), as `jaxviz classes` computes it.
  c.classes = "all"           # "all", class indices and ranges "0,3,7-9", or "" for none
  c.passes = 2                # passes; each after the first starts from the previous images
  c.class_loop = "python"     # how the class ascent compiles (the classes view's `loop`)
  # Dataset examples (models with a dataset: LeNet; its `dataset`).
  c.examples = 9              # most exciting dataset images per filter; 0 = none
  c.example_split = "test"    # the split they are drawn from: test or train
  c.example_rank = "max"      # an image's score for a filter: max or mean of the filter's map
  return c
