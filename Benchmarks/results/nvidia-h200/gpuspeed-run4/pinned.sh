#!/usr/bin/env bash
# The third call of this run (after scripts/nvidia-remote had unpacked the carry): the release CLI
# before (vkverbs-before.xz) and after (vkverbs.xz) this change, and CuPy, each pinned to the CPU
# that takes the GPU's interrupts and to another one. Every JSON goes into $OUT/pinned.tar.gz,
# a summary into $OUT/pinned.txt.
set -uo pipefail
P=/tmp/vkverbs-nvidia
CARRY=${VKVERBS_CARRY:?}
SYSTEM_LD=${LD_LIBRARY_PATH-}
export LD_LIBRARY_PATH=$P/root/usr/lib/x86_64-linux-gnu:$P/root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$P/extra
xz -dc "$CARRY/vkverbs-before.xz" > "$P/vkverbs-before" && chmod +x "$P/vkverbs-before"
mkdir -p "$OUT/pinned"
S=$OUT/pinned.txt
irq_cpu=$(grep -i nvidia /proc/interrupts | awk '{for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) if ($i > best) {best = $i; cpu = i - 2}} END {print cpu + 0}')
other=$(( (irq_cpu + 5) % $(nproc) ))
{ echo "cpu with the most nvidia interrupts: $irq_cpu; the other: $other"; grep -i nvidia /proc/interrupts; } > "$S"
summary='import json, sys
d = json.load(open(sys.argv[1]))
med = lambda v: sorted(v)[len(v) // 2]
for r in d["results"]:
    w = r["wallNanoseconds"]
    print("  result", r["destination"], r["direction"], r["size"], "wall best %.1f median %.1f us" % (min(w) / 1e3, med(w) / 1e3))
for p in d.get("syncProbe") or []:
    print("  probe", p["method"], p["size"], "p10 %.1f median %.1f p90 %.1f" % (p["p10Microseconds"], p["medianMicroseconds"], p["p90Microseconds"]))'
for cpu in "$irq_cpu" "$other"; do
  for bin in before after; do
    exe=$P/vkverbs; [[ $bin == before ]] && exe=$P/vkverbs-before
    f=$OUT/pinned/gpu-bench-$bin-cpu$cpu.json
    taskset -c "$cpu" "$exe" gpu-bench --json --min 4096 --max 16777216 --factor 16 --destinations host-visible,staged --chunk 16777216 \
      -r 50 --probe-sizes 4096 --probe-sizes 1048576 --probe-iterations 500 > "$f" 2>/dev/null
    echo "=== $bin, cpu $cpu (exit $?)" >> "$S"
    python3 -c "$summary" "$f" >> "$S" 2>&1
  done
  f=$OUT/pinned/cuda-cpu$cpu.json
  taskset -c "$cpu" env "LD_LIBRARY_PATH=$SYSTEM_LD" python3 "$CARRY/Benchmarks/cuda_copy_bench.py" --json --min 4096 --max 16777216 --factor 16 \
    --destinations pinned -r 50 --probe-sizes 4096 1048576 --probe-iterations 500 > "$f" 2>/dev/null
  echo "=== CUDA, cpu $cpu (exit $?)" >> "$S"
  python3 -c "$summary" "$f" >> "$S" 2>&1
done
tar -czf "$OUT/pinned.tar.gz" -C "$OUT" pinned && rm -rf "$OUT/pinned"
