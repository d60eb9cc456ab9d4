"""Benchmark: VGG16 (random He-normal weights), 16 filters, 64×64 px, 20 steps of the seeds'
normalized gradient, at three depths: block1_conv2, block3_conv1, block5_conv1.

    jaxviz bench --config bench_vgg16
    jaxviz bench --config bench_vgg16 --json
    jaxviz bench --config bench_vgg16 --config.layer=block3_conv1 --config.num_filters=64

The seed method is timed on 4 filters per layer and scaled to 16. The single-layer presets
(bench_vgg16_block1_conv2, …) run one of these jobs each.
"""

from jaxviz.configs import bench_lenet


def get_config():
  c = bench_lenet.get_config()
  c.model = "vgg16"
  c.layer = "block1_conv2,block3_conv1,block5_conv1"
  c.num_filters = 16
  c.steps = 20
  c.size = 64
  c.baseline_filters = 4
  return c
