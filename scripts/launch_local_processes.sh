#!/usr/bin/env bash
# Runs one jaxviz command as N cooperating processes on this machine, joined by JAX's
# multi-host runtime (jax.distributed) on 127.0.0.1. Process 0 writes the workdir and prints
# progress; the outputs equal those of a single-process run.
#
#   scripts/launch_local_processes.sh 2 gallery --workdir runs/lenet_all --config.layer=conv
#
# Use it to try a multi-host setup on a laptop, or to give each GPU of a machine its own process
# (GPUS_PER_PROCESS=1 gives process i the GPU i). If any process fails, the others are stopped.
#
# Environment:
#   PORT              coordinator port (default: a free one)
#   JAXVIZ            the jaxviz command (default: jaxviz)
#   GPUS_PER_PROCESS  if set, process i sees only GPUs i*G … i*G+G-1 (CUDA_VISIBLE_DEVICES)
set -euo pipefail

if [[ $# -lt 2 || ! $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 NUM_PROCESSES JAXVIZ_ARGS..." >&2
  echo "   e.g. $0 2 gallery --workdir runs/lenet --config.chunk_size=8" >&2
  exit 2
fi
n=$1
shift
port=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
read -r -a jaxviz <<< "${JAXVIZ:-jaxviz}"

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'stop_all; exit 130' INT TERM

for ((i = 0; i < n; i++)); do
  if [[ -n ${GPUS_PER_PROCESS:-} ]]; then
    first=$((i * GPUS_PER_PROCESS))
    export CUDA_VISIBLE_DEVICES=$(seq -s, "$first" $((first + GPUS_PER_PROCESS - 1)))
  fi
  "${jaxviz[@]}" "$@" --coordinator_address="127.0.0.1:$port" --num_processes="$n" \
      --process_id="$i" &
  pids+=($!)
done

# Wait for each process to end; the first failure stops the rest.
status=0
for ((left = n; left > 0; left--)); do
  code=0
  wait -n || code=$?
  if [[ $code -ne 0 ]]; then
    status=$code
    echo "$0: a process failed (exit status $code); stopping the others" >&2
    stop_all
    break
  fi
done
wait || true
exit "$status"
