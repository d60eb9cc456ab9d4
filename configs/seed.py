"""The seeds' method, faithfully: 20 steps of the normalized gradient, each of 1.0 grey level
(0–255 pixel units, on any model), from a grey image plus noise, no regularizers. Every gallery
config starts from this one, and every field is here.

    jaxviz gallery --config seed --workdir runs/seed                     # LeNet conv2d_2
    jaxviz gallery --config seed --workdir runs/seed_vgg --config.model=vgg16 \\
        --config.layer=block5_conv1 --config.size=128 --config.weights=vgg16.h5

Presets (each a config file; any field can still be overridden):
  seed      this file: the seeds' normalized-gradient ascent on pixels
  yosinski  pixels with the regularizers of Yosinski et al. (2015): decay, blur, jitter, clipping
  lucid     Lucid's defaults: decorrelated Fourier image, Lucid's transforms, Adam 0.05, 512 steps
  jaxviz    the default: what measures best on both LeNets and VGG16 (QUALITY.md)
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.preset = "seed"          # the preset these settings come from (recorded in filters.json)
  # What to visualize.
  c.model = "lenet"          # registered model name: lenet, vgg16
  c.weights = ""             # checkpoint or Keras file; "" = the model's default weights
  c.dataset = "digits"       # LeNet's default weights are trained on: digits (offline), mnist
  c.layer = "conv2d_2"       # layer name as `jaxviz layers` prints it; "conv" = every conv layer
  c.filters = "all"          # "all", or indices and ranges: "0,3,10-19"
  c.size = 0                 # image side in pixels; 0 = the model's (LeNet 28, VGG16 224)
  c.seed = 0                 # base random key; each filter folds in its own index
  # The parameterization: what the optimizer changes (jaxviz/param.py).
  c.parameterization = "pixel"  # pixel: the pixels; fourier: Lucid's spectral image
  c.bounded = False          # pixel: squash pixels into 0–255 with a sigmoid (fourier always is)
  c.decay_power = 1.0        # fourier: coefficient scale 1 / max(f, 1/side) ** decay_power
  c.decay_power_start = 1.0  # ... ramped up from this slope (Adam) ...
  c.decay_ramp = 0.0         # ... over this fraction of the steps; 0: decay_power throughout
  c.decorrelate = True       # fourier on RGB models: Lucid's colour decorrelation
  c.init_noise = 20.0        # pixel: start grey 128 plus uniform noise of this width (grey levels)
  # The ascent.
  c.steps = 20               # gradient-ascent steps
  c.step_size = 1.0          # learning rate; pixel: grey levels (0–255) per step
  c.schedule = "constant"    # the step size: constant, or cosine (down to a tenth at the end)
  c.optimizer = "sgd"        # any optax optimizer taking learning_rate: sgd, adam, rmsprop, …
  c.normalize_grad = True    # divide the gradient by sqrt(mean(g²)) + 1e-5, as the seeds do
  # The objective (jaxviz/objectives.py).
  c.objective = "channel"    # channel: mean of the filter's map; neuron: its centre
  c.exclude_border = 0       # ignore this many activation pixels at each edge
  c.before_relu = False      # maximize the map before its ReLU (fused or the next layer)
  c.follow_relu = False      # count a ReLU layer after the target (LeNet conv2d_2 → activation_2);
                             # the seeds maximize the layer's output as Keras reports it
  c.rescue = False           # ReLU rescue: follow the pre-ReLU peak while a post-ReLU map is all
                             # zero, or, with rescue_slope > 0, ...
  c.rescue_slope = 0.0       # ... a leaky ReLU of this slope below zero throughout
  c.lift = 0.0               # with rescue: this fraction of the steps first follows the map
                             # before its ReLU (every place of it lifted)
  c.l1_weight = 0.0          # penalties on (pixel − neutral) / 255, subtracted with these weights
  c.l2_weight = 0.0
  c.tv_weight = 0.0          # total variation
  c.average = 0.0            # the final image from an average of the variables over the steps,
                             # each step's weight this much less than the next one's (0: the last)
  c.diversity = 1            # images per filter; above 1 they are pushed apart ...
  c.diversity_weight = 0.0   # ... with this weight (Lucid's Gram-matrix similarity)
  # Transforms before each forward pass, drawn per image and step (jaxviz/transforms.py).
  c.pad = 0.0                # neutral border, as a fraction of the side
  c.jitter = 0.0             # random shift up to this fraction of the side
  c.scale = 0.0              # random zoom by 1 ± this
  c.rotate = 0.0             # random rotation up to this many degrees
  c.frame = 0.0              # a neutral frame of this fraction of the side, view resized back
  c.crop = 1.0               # each step sees a random window of this fraction of the side
  c.crop_first = False       # cut that window before the other transforms (they move its content)
  # Regularizers on pixel variables (0 turns each off), after Yosinski et al. 2015.
  c.decay = 0.0              # L2 decay: variables *= 1 - decay after each step
  c.blur_sigma = 0.0         # Gaussian blur of this sigma (pixels) ...
  c.blur_every = 4           # ... every this many steps
  c.clip_norm_percentile = 0.0          # zero pixels whose norm is below this percentile
  c.clip_contribution_percentile = 0.0  # zero pixels whose |x·grad| is below this percentile
  # Quality.
  c.robustness_samples = 16  # held-out random transforms the robustness is measured under
  c.wake = False             # gallery: rerun each dead filter without transforms, keeping the
                             # result where it fires (marked "woken"; jaxviz/wake.py) ...
  c.wake_passes = "pixel"    # ... in each of these parameterizations in turn (fourier, pixel)
  # The engine.
  c.chunk_size = 0           # filters per compiled batch; 0 = chosen from the memory budget
  c.memory_budget_mb = 0     # for chunk_size 0: 0 = half the available RAM, 80 % of GPU memory
  c.loop = "scan"            # how steps are compiled: scan (one compiled step), unroll, python
  c.channel_only = True      # evaluate only filter k's channel of the target conv for image k
  c.image_only_grad = True   # backward passes as forward-speed kernels (same images)
  c.conv = "auto"            # convolutions: auto (oneDNN on CPUs where built, its wide steps in
                             # bfloat16 on AMX/AVX-512 BF16 CPUs), xla, onednn (float32),
                             # onednn_bf16 (reports always in float32)
  # The gallery.
  c.max_tiles = 0            # keep the best this many live filters; 0 = all of them
  c.margin = 5               # pixels between tiles
  c.labels = False           # print each tile's filter number
  return c
