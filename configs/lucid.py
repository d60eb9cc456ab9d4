"""Lucid's defaults (Olah et al., "Feature Visualization", Distill 2017) as Lucent runs them at
a fixed image size: a decorrelated Fourier image squashed by a sigmoid, Lucid's standard
transforms (pad 12 with grey, jitter 8, scale 0.9–1.1, rotate ±10°, jitter 4, then the view
resized back to the image's side, as Lucent's `fixed_image_size` does), Adam 0.05 for 512
steps, the post-ReLU channel mean with ReLU rescue.

Here the pad and the resize are the `frame` (12 / 128 of the side), the two jitters one shift
of up to 4 % of the side either way (Lucent's 8 + 4 pixels of the padded view, one way, about
±4 pixels of the resized view around a fixed offset), and all of them one resampling at the
image's own size.

    jaxviz gallery --config lucid --workdir runs/lucid
"""

from jaxviz.configs import seed


def get_config():
  c = seed.get_config()
  c.preset = "lucid"
  c.parameterization = "fourier"
  c.optimizer = "adam"
  c.step_size = 0.05
  c.normalize_grad = False
  c.steps = 512
  c.frame = 0.094            # 12 / 128: Lucent's pad, the view resized back to the side
  c.jitter = 0.04            # (8 + 4) / 2 pixels of the padded view, as a range either way
  c.scale = 0.1
  c.rotate = 10.0
  c.follow_relu = True
  c.rescue = True
  return c
