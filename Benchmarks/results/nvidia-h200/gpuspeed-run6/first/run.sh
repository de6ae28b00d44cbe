#!/usr/bin/env bash
# The one device call of this run, from the repository root there with .nvidia-carry carried (this
# script travels in it as .nvidia-carry/run.sh): scripts/nvidia-remote with the full table, the
# variants below, then a second CuPy run (cuda2.json) for the spread between two runs of one call.
set -u
export VKVERBS_CARRY=$PWD/.nvidia-carry
export VKVERBS_SKIP_DOCTOR=1 VKVERBS_SKIP_CHECKS=1
export VKVERBS_BENCH_ARGS='--probe-sizes 4096 --probe-sizes 1048576 --probe-iterations 500'
export VKVERBS_CUDA_ARGS='--probe-sizes 4096 1048576 --probe-iterations 500'
rm -f .nvidia-carry/vk_submit_probe   # at most 8 files come back: cuda2.json takes the probe's place
v='--closing-barrier full --destinations host-import,host-visible,staged --chunk 4194304 --chunk 16777216'
v+=';--destinations host-visible --closing-barrier none'
v+=';--two-queues --destinations host-import,host-visible --min 262144'
v+=';--destinations staged --chunk 33554432 --chunk 67108864 --min 1048576'
v+=';--destinations staged --chunk 16777216 --slots 2 --slots 4 --min 1048576'
v+=';--destinations host-import,host-visible,staged --chunk 4194304 --chunk 16777216'
export VKVERBS_BENCH_VARIANTS=$v
bash .nvidia-carry/scripts/nvidia-remote
rc=$?
cpu=$(sed -n 's/.*benchmarks pinned to: taskset -c \([0-9]*\).*/\1/p' "$OUT/log.txt" | head -1)
pin=(); [[ -n $cpu ]] && pin=(taskset -c "$cpu")
echo "cuda2: ${pin[*]:-unpinned}" >> "$OUT/log.txt"
timeout 300 "${pin[@]}" env PYTHONUNBUFFERED=1 python3 Benchmarks/cuda_copy_bench.py --json > "$OUT/cuda2.json" 2>> "$OUT/log.txt"
echo "cuda2: exit $?" >> "$OUT/log.txt"
exit $rc
