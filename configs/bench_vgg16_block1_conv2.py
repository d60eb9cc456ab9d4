"""Benchmark: VGG16 `block1_conv2` (random He-normal weights), 16 filters, 64×64 px, 20 steps.

    jaxviz bench --config bench_vgg16_block1_conv2
    jaxviz bench --config bench_vgg16_block1_conv2 --config.num_filters=64 --config.size=128
"""

from jaxviz.configs import bench_vgg16


def get_config():
  c = bench_vgg16.get_config()
  c.layer = "block1_conv2"
  return c
