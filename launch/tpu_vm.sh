#!/usr/bin/env bash
# Cloud TPU VM (single- or multi-host slice): copies the repo to every worker, installs,
# and starts the same command on all of them with --distributed.
#   TPU_NAME=my-v4-32 ZONE=us-central2-b bash launch/tpu_vm.sh configs/clip_l14.py \
#       --config.train_csv=/mnt/data/hierarcaps_train.csv --config.workdir=/mnt/ckpt/l14
# The workdir must be on storage every worker sees (a shared disk or a bucket path).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TPU_NAME:?set TPU_NAME}" "${ZONE:?set ZONE}"
config=${1:?usage: launch/tpu_vm.sh CONFIG [--config.key=value ...]}; shift
tar czf /tmp/hierre_jax.tgz --exclude=.venv --exclude=workdirs --exclude=.git .
gcloud compute tpus tpu-vm scp /tmp/hierre_jax.tgz "$TPU_NAME":~/ --zone "$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "\
  mkdir -p ~/hierre_jax && tar xzf ~/hierre_jax.tgz -C ~/hierre_jax && cd ~/hierre_jax && \
  python3 -m pip install -q -U 'jax[tpu]' && python3 -m pip install -q -e . && \
  python3 -m hierre_jax.train --distributed --config $config $*"
