#!/usr/bin/env bash
# gpuspeed-run7, third device call (repeat/): the default table again (same binary as final/, a
# second sample of both sides), Vulkan's copy shader through host memory, and CUDA kernels copying
# through mapped host memory (zero-copy.jsonl; final/'s attempt failed on a CuPy call CuPy 14 lacks).
# Travels as .nvidia-carry/run.sh.
set -u
export VKVERBS_CARRY=$PWD/.nvidia-carry
export VKVERBS_SKIP_DOCTOR=1 VKVERBS_SKIP_CHECKS=1
export VKVERBS_BENCH_VARIANTS='--destinations host-visible,host-import --copier shader --min 16777216'
rm -f .nvidia-carry/vk_submit_probe
bash .nvidia-carry/scripts/nvidia-remote
rc=$?
cpu=$(sed -n 's/.*benchmarks pinned to: taskset -c \([0-9]*\).*/\1/p' "$OUT/log.txt" | head -1)
pin=(); [[ -n $cpu ]] && pin=(taskset -c "$cpu")
timeout 200 "${pin[@]}" env PYTHONUNBUFFERED=1 python3 .nvidia-carry/cuda_zero_copy_bench.py > "$OUT/zero-copy.jsonl" 2>> "$OUT/log.txt"
echo "zero-copy: exit $?" >> "$OUT/log.txt"
{ echo "--- nvidia-smi.txt"; cat "$OUT/nvidia-smi.txt"; } >> "$OUT/log.txt" && rm -f "$OUT/nvidia-smi.txt"
exit $rc
