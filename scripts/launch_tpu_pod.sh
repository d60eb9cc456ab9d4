#!/usr/bin/env bash
# Renders every filter of every conv layer of VGG16 on a Cloud TPU pod slice: every worker runs
# the same jaxviz command, JAX's multi-host runtime joins them, and worker 0 writes the outputs.
#
#   export TPU_NAME=my-v4-32 ZONE=us-central2-b          # an existing TPU VM pod slice
#   scripts/launch_tpu_pod.sh                            # setup, then the whole-VGG16 job
#   SETUP=0 scripts/launch_tpu_pod.sh --config.steps=50  # again, later: extra flags go to jaxviz
#
# What it does, with gcloud from your machine (run from a jaxviz checkout):
#   1. copies this checkout to ~/jaxviz on every worker and installs it with jax[tpu];
#   2. downloads and converts the VGG16 ImageNet weights on every worker;
#   3. runs `jaxviz gallery --distributed=on` on all workers at once, into $WORKDIR on worker 0.
# Killed, disconnected or preempted? Run the same command again (SETUP=0): finished chunks are
# kept and only the missing ones are computed. Fetch the results with
#   gcloud compute tpus tpu-vm scp --recurse "$TPU_NAME":~/runs/vgg16_all . --worker=0 --zone="$ZONE"
#
# Environment: TPU_NAME, ZONE (required); PROJECT (default: gcloud's); WORKDIR (default:
# runs/vgg16_all, relative to the workers' home; put it on a mounted Filestore or persistent disk
# to survive deleting the TPU); CONFIG (default: vgg16_all_conv); SETUP (1: do steps 1-2).
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the name of your TPU pod slice}"
: "${ZONE:?set ZONE to its zone, e.g. us-central2-b}"
PROJECT=${PROJECT:-$(gcloud config get-value project 2>/dev/null)}
WORKDIR=${WORKDIR:-runs/vgg16_all}
CONFIG=${CONFIG:-vgg16_all_conv}
SETUP=${SETUP:-1}
REPO=$(cd "$(dirname "$0")/.." && pwd)

on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --project="$PROJECT" \
      --worker=all --command="$1"
}

if [[ $SETUP == 1 ]]; then
  gcloud compute tpus tpu-vm scp --recurse "$REPO" "$TPU_NAME":~/jaxviz --zone="$ZONE" \
      --project="$PROJECT" --worker=all
  on_all_workers "pip install -U 'jax[tpu]' && pip install ~/jaxviz"
  on_all_workers "python3 -m jaxviz.cli fetch-weights vgg16"
fi

extra=""
if (($#)); then extra=$(printf ' %q' "$@"); fi
on_all_workers "python3 -m jaxviz.cli gallery --distributed=on --config $(printf %q "$CONFIG") \
--workdir $(printf %q "$WORKDIR")$extra"
