"""The seeds' method, faithfully: LeNet `conv2d_2`, 20 steps of the normalized gradient with
step 1.0 from a grey image plus noise, no regularizers. Every other config starts from this one.

    jaxviz gallery --config lenet_seed --workdir runs/lenet_seed

The seeds took this step on 0–255 pixels; LeNet here reads [0, 1], so the same step is large
and the images come out as sharp gratings. `lenet_conv2d_2` (the default) adds regularizers.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # What to visualize.
  c.model = "lenet"          # registered model name: lenet, vgg16
  c.weights = ""             # checkpoint or Keras file; "" = the model's default weights
  c.dataset = "digits"       # LeNet's default weights are trained on this: digits (offline) or mnist
  c.layer = "conv2d_2"       # layer name as `jaxviz layers` prints it
  c.filters = "all"          # "all", or indices and ranges: "0,3,10-19"
  # The ascent.
  c.steps = 20               # gradient-ascent steps
  c.size = 28                # image side in pixels (LeNet takes 28 only)
  c.seed = 0                 # base random key; each filter folds in its own index
  c.step_size = 1.0          # learning rate of the optimizer
  c.optimizer = "sgd"        # any optax optimizer taking learning_rate: sgd, adam, rmsprop, …
  c.normalize_grad = True    # divide the gradient by sqrt(mean(g²)) + 1e-5, as the seeds do
  c.init_noise = 20.0        # start: grey 128 plus uniform noise of this width, in 0–255 pixels
  # The objective.
  c.exclude_border = 0       # ignore this many activation pixels at each edge
  c.before_relu = False      # maximize a fused ReLU's input instead of its output
  # Regularizers (0 turns each off), after Yosinski et al. 2015.
  c.decay = 0.0              # L2 decay: image *= 1 - decay after each step
  c.blur_sigma = 0.0         # Gaussian blur of this sigma (pixels) ...
  c.blur_every = 4           # ... every this many steps
  c.clip_norm_percentile = 0.0          # zero pixels whose norm is below this percentile
  c.clip_contribution_percentile = 0.0  # zero pixels whose |x·grad| is below this percentile
  c.jitter = 0               # random shift of up to this many pixels before each forward pass
  c.tv_weight = 0.0          # weight of the total-variation penalty in the objective
  # The engine.
  c.chunk_size = 0           # filters per compiled batch; 0 = chosen from the memory budget
  c.memory_budget_mb = 0     # for chunk_size 0: 0 = half the free RAM (CPU), 80 % of GPU memory
  c.loop = "scan"            # how steps are compiled: scan (one compiled step), unroll, python
  c.channel_only = True      # evaluate only filter k's channel of the target conv for image k
  c.image_only_grad = True   # backward passes as forward-speed kernels (same images)
  # The gallery.
  c.max_tiles = 0            # keep the best this many live filters; 0 = all of them
  c.margin = 5               # pixels between tiles
  c.labels = False           # print each tile's filter number
  return c
