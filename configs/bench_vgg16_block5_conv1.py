"""Benchmark: VGG16 `block5_conv1` (random He-normal weights), 16 filters, 64×64 px, 20 steps.

    jaxviz bench --config bench_vgg16_block5_conv1
    jaxviz bench --config bench_vgg16_block5_conv1 --config.num_filters=64 --config.size=128
"""

from jaxviz.configs import bench_vgg16


def get_config():
  c = bench_vgg16.get_config()
  c.layer = "block5_conv1"
  return c
