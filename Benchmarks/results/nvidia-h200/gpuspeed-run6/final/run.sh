#!/usr/bin/env bash
# The second device call of this run (final/): the full table with 256 KiB in the copy family
# calibration, the families pinned one by one up to 16 MiB, the closing barriers on the chosen
# family, 64 MiB staging slots, then a second CuPy run (cuda2.json). Travels as .nvidia-carry/run.sh.
set -u
export VKVERBS_CARRY=$PWD/.nvidia-carry
export VKVERBS_SKIP_DOCTOR=1 VKVERBS_SKIP_CHECKS=1
export VKVERBS_BENCH_ARGS='--probe-sizes 4096 --probe-sizes 1048576 --probe-iterations 500'
export VKVERBS_CUDA_ARGS='--probe-sizes 4096 1048576 --probe-iterations 500'
rm -f .nvidia-carry/vk_submit_probe   # at most 8 files come back: cuda2.json takes the probe's place
v='--destinations host-import,host-visible,staged --chunk 4194304 --chunk 16777216'
for f in 1 3 4; do v+=";--copy-family $f --destinations host-visible,staged --chunk 16777216 --max 16777216"; done
v+=';--closing-barrier full --destinations host-import,host-visible --max 16777216'
v+=';--destinations host-visible --closing-barrier none --max 16777216'
v+=';--destinations staged --chunk 67108864 --slots 2 --slots 3 --min 16777216'
export VKVERBS_BENCH_VARIANTS=$v
bash .nvidia-carry/scripts/nvidia-remote
rc=$?
cpu=$(sed -n 's/.*benchmarks pinned to: taskset -c \([0-9]*\).*/\1/p' "$OUT/log.txt" | head -1)
pin=(); [[ -n $cpu ]] && pin=(taskset -c "$cpu")
echo "cuda2: ${pin[*]:-unpinned}" >> "$OUT/log.txt"
timeout 300 "${pin[@]}" env PYTHONUNBUFFERED=1 python3 Benchmarks/cuda_copy_bench.py --json > "$OUT/cuda2.json" 2>> "$OUT/log.txt"
echo "cuda2: exit $?" >> "$OUT/log.txt"
exit $rc
