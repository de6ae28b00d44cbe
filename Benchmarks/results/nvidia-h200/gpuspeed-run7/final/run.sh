#!/usr/bin/env bash
# gpuspeed-run7, second device call (final/): the full table with h2d copies closed by no barrier
# (their readers wait on the copy's semaphore), the former copy-to-device barrier on h2d in the same
# call, 64 MiB staging slots, a second CuPy run (cuda2.json), and CUDA kernels copying through
# mapped host memory (zero-copy.jsonl). Travels as .nvidia-carry/run.sh.
set -u
export VKVERBS_CARRY=$PWD/.nvidia-carry
export VKVERBS_SKIP_DOCTOR=1 VKVERBS_SKIP_CHECKS=1
export VKVERBS_BENCH_ARGS='--probe-sizes 4096 --probe-sizes 1048576 --probe-iterations 500'
export VKVERBS_CUDA_ARGS='--probe-sizes 4096 1048576 --probe-iterations 500'
rm -f .nvidia-carry/vk_submit_probe   # at most 8 files come back
v='--closing-barrier copy-to-device --directions h2d --destinations host-import,host-visible,staged --chunk 16777216 --max 16777216'
v+=';--directions h2d --destinations host-import,host-visible,staged --chunk 16777216 --max 16777216'
v+=';--destinations staged --chunk 67108864 --slots 3 --min 16777216'
export VKVERBS_BENCH_VARIANTS=$v
bash .nvidia-carry/scripts/nvidia-remote
rc=$?
cpu=$(sed -n 's/.*benchmarks pinned to: taskset -c \([0-9]*\).*/\1/p' "$OUT/log.txt" | head -1)
pin=(); [[ -n $cpu ]] && pin=(taskset -c "$cpu")
echo "cuda2: ${pin[*]:-unpinned}" >> "$OUT/log.txt"
timeout 300 "${pin[@]}" env PYTHONUNBUFFERED=1 python3 Benchmarks/cuda_copy_bench.py --json > "$OUT/cuda2.json" 2>> "$OUT/log.txt"
echo "cuda2: exit $?" >> "$OUT/log.txt"
timeout 200 "${pin[@]}" env PYTHONUNBUFFERED=1 python3 .nvidia-carry/cuda_zero_copy_bench.py > "$OUT/zero-copy.jsonl" 2>> "$OUT/log.txt"
echo "zero-copy: exit $?" >> "$OUT/log.txt"
{ echo "--- nvidia-smi.txt"; cat "$OUT/nvidia-smi.txt"; } >> "$OUT/log.txt" && rm -f "$OUT/nvidia-smi.txt"
exit $rc
