#!/usr/bin/env bash
# The device call of this run, from the repository root with .nvidia-carry carried (scripts/nvidia-prepare,
# this script copied into it as .nvidia-carry/run.sh): the carried nvidia-remote and cuda_copy_bench.py
# (the device tool sends the session's main checkout, whose copies are older), the default gpu-bench (copy
# family chosen by measurement), CuPy, the C probe, and the same copies on each family named by hand,
# h2d staged submitted up front, d2h with the copy-to-host barrier.
set -u
export VKVERBS_CARRY=$PWD/.nvidia-carry
export VKVERBS_SKIP_DOCTOR=1
export VKVERBS_PROBE_ARGS='--iterations 500 --sizes 4096,65536,1048576'
export VKVERBS_BENCH_ARGS='--probe-sizes 4096 --probe-sizes 1048576 --probe-iterations 500'
export VKVERBS_CUDA_ARGS='--probe-sizes 4096 1048576 --probe-iterations 500'
v='--copy-family main --destinations host-import,host-visible,staged --chunk 16777216'
for f in 1 2 3 4; do v+=";--copy-family $f --destinations host-visible,staged --chunk 16777216"; done
v+=';--destinations staged --chunk 16777216 --directions h2d --receive-submission up-front'
v+=';--destinations host-visible,staged --chunk 16777216 --directions d2h --closing-barrier copy-to-host'
export VKVERBS_BENCH_VARIANTS=$v
bash .nvidia-carry/scripts/nvidia-remote
