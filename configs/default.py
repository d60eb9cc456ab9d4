"""The default preset: what measures best on both LeNets and on VGG16 (QUALITY.md), with no
setting tuned per model. Every default job config builds on it.

A decorrelated Fourier image squashed into the valid pixel range (Lucid's parameterization,
its spectrum's slope rising from Lucid's 1.0 to a steeper 1.5 over the first half of the steps:
fine patterns get a start before the coarse ones dominate), random shifts, zooms and rotations
drawn per image and step (a little wider than the held-out ones robustness is measured under),
Adam on the spectrum, the post-ReLU channel mean with ReLU rescue. A quarter of Lucid's 512
steps, each twice as large. A filter that ends dead gets a second pass (`jaxviz.wake`): the same
objective in bounded pixels without transforms; where that fires, its image is kept and marked
"woken".

    jaxviz gallery --config default --workdir runs/default                 # LeNet conv2d_2
    jaxviz gallery --config default --workdir runs/b5 --config.model=vgg16 \\
        --config.layer=block5_conv1 --config.size=128 --config.weights=vgg16.h5
"""

from jaxviz.configs import seed


def get_config():
  c = seed.get_config()
  c.preset = "default"
  c.parameterization = "fourier"
  c.decay_power = 1.5
  c.decay_power_start = 1.0  # Lucid's slope at first, steepening to 1.5 by half way
  c.decay_ramp = 0.5
  c.optimizer = "adam"
  c.step_size = 0.1
  c.normalize_grad = False
  c.steps = 128
  c.jitter = 0.08
  c.scale = 0.15
  c.rotate = 15.0
  c.follow_relu = True       # the post-ReLU map, whether the ReLU is fused or the next layer
  c.rescue = True            # a map that is zero everywhere follows its pre-ReLU peak
  c.wake = True              # a filter still dead at the end gets a pass in pixels, no transforms
  return c
