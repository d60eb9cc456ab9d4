"""Every filter of every conv layer of VGG16: 13 layers, 4 224 filters, one gallery per layer.

    jaxviz fetch-weights vgg16        # once, on every host: the Keras ImageNet weights
    jaxviz gallery --config vgg16_all_conv --workdir runs/vgg16_all

Layers run one after another (block1_conv1 … block5_conv3), each split into chunks (one per device
and call, sized from each device's memory) that run on all local devices at once and, started with
`jax.distributed`, on every host (see docs/scale.md and scripts/launch_*). Each chunk is saved as it
finishes: rerunning the same command after a crash or preemption computes only what is missing.

Expected time: roughly 4 224 × 128 steps of forward + backward to the layer at 128×128 px; a few
minutes on one modern accelerator, proportionally less on a pod slice; hours on a laptop CPU.
"""

from jaxviz.configs import default


def get_config():
  c = default.get_config()
  c.model = "vgg16"
  c.layer = "conv"        # every conv layer, in order
  c.filters = "all"
  c.size = 128
  c.chunk_size = 0        # filters per device and call; 0 = from the memory budget
  c.max_tiles = 0         # every live filter in the gallery
  c.margin = 5
  return c
