#!/usr/bin/env bash
# The second device call of this run (final/): as run.sh, without the C probe (first/ has it; the call
# brings back at most 8 files), the copy family chosen per size class.
set -u
export VKVERBS_CARRY=$PWD/.nvidia-carry
export VKVERBS_SKIP_DOCTOR=1
export VKVERBS_BENCH_ARGS='--probe-sizes 4096 --probe-sizes 1048576 --probe-iterations 500'
export VKVERBS_CUDA_ARGS='--probe-sizes 4096 1048576 --probe-iterations 500'
rm -f .nvidia-carry/vk_submit_probe
v='--copy-family main --destinations host-import,host-visible,staged --chunk 4194304 --chunk 16777216'
for f in 1 2 3 4; do v+=";--copy-family $f --destinations host-visible,staged --chunk 4194304 --chunk 16777216"; done
v+=';--destinations staged --chunk 4194304 --chunk 16777216 --directions h2d --receive-submission up-front'
v+=';--destinations host-visible,staged --chunk 4194304 --chunk 16777216 --directions d2h --closing-barrier copy-to-host'
export VKVERBS_BENCH_VARIANTS=$v
bash .nvidia-carry/scripts/nvidia-remote
