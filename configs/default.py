"""The default preset: what measures best on both LeNets and on VGG16 (QUALITY.md), with no
setting tuned per model. Every default job config builds on it.

A decorrelated Fourier image squashed into the valid pixel range (Lucid's parameterization,
its spectrum's slope rising from Lucid's 1.0 to a steeper 1.75 over the first half of the
steps: fine patterns get a start before the coarse ones dominate). Before each forward pass,
drawn per image and step: a random window of 7/8 of the side (a step costs about 0.77 of one on
the whole image), then shifts (±8 % of the side), zooms (±25 %) and rotations (±25°) of that
window, and a thin neutral frame (3 % of the side, the view resized back, as Lucent's pad at a
fixed size). Cutting the window first means grey enters at the view's edges, as under the
held-out transforms robustness is measured with, instead of content cut off against the
network's zero padding. Adam on the spectrum, 128 steps (a quarter of Lucid's, each twice as
large); the final image is a running average of the spectrum over the steps. The post-ReLU
channel mean with ReLU rescue through a leaky ReLU (slope 0.1), so a unit that fires only under
some transforms keeps a gradient.

A filter that ends dead gets a second pass (`jaxviz.wake`): the same objective without
transforms, in the spectrum, then in bounded pixels for those still dead; where one fires, its
image is kept and marked "woken".

The zooms and rotations are wide for robustness: on VGG16's whole `block5_conv1` the median
robustness is 0.902 with them and 0.877 with ±15 %/±15°, which costs about a sixth of the
activation (the preset `strong`). `sharp` is `strong` with the window cut after the other
transforms; `wide` (the default until 2026-12-06) is `sharp` with wider transforms.

    jaxviz gallery --config default --workdir runs/default                 # LeNet conv2d_2
    jaxviz gallery --config default --workdir runs/b5 --config.model=vgg16 \\
        --config.layer=block5_conv1 --config.size=128 --config.weights=vgg16.h5
"""

from jaxviz.configs import seed


def get_config():
  c = seed.get_config()
  c.preset = "default"
  c.parameterization = "fourier"
  c.decay_power = 1.75
  c.decay_power_start = 1.0  # Lucid's slope at first, steepening to 1.75 by half way
  c.decay_ramp = 0.5
  c.optimizer = "adam"
  c.step_size = 0.1
  c.normalize_grad = False
  c.steps = 128
  c.crop = 0.875
  c.crop_first = True        # the window first, then the transforms move its content
  c.jitter = 0.08
  c.scale = 0.25
  c.rotate = 25.0
  c.frame = 0.03
  c.average = 0.9
  c.follow_relu = True       # the post-ReLU map, whether the ReLU is fused or the next layer
  c.rescue = True            # ReLU rescue: ...
  c.rescue_slope = 0.1       # ... a leaky ReLU below zero
  c.wake = True              # a filter still dead at the end gets a pass without transforms ...
  c.wake_passes = "fourier,pixel"  # ... in the spectrum, then in pixels for those still dead
  return c
