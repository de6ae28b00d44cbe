#!/usr/bin/env bash
# The second call of this run (after scripts/nvidia-remote had unpacked the carry): is the ~30 us
# stall of the release CLI's submissions a matter of which CPU the submitting thread runs on?
# Runs the CLI's probe and the C probe pinned to the CPU that takes the GPU's interrupts and to others.
set -uo pipefail
P=/tmp/vkverbs-nvidia
CARRY=${VKVERBS_CARRY:?}
export LD_LIBRARY_PATH=$P/root/usr/lib/x86_64-linux-gnu:$P/root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$P/extra
D=$OUT/diag.txt
{ echo "--- /proc/interrupts (header, nvidia lines)"; head -1 /proc/interrupts; grep -i nvidia /proc/interrupts; } > "$D"
irq_cpu=$(grep -i nvidia /proc/interrupts | awk '{for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) if ($i > best) {best = $i; cpu = i - 2}} END {print cpu + 0}')
echo "cpu with the most nvidia interrupts: $irq_cpu" >> "$D"
summary='import json, sys
d = json.load(sys.stdin)
med = lambda v: sorted(v)[len(v) // 2]
for r in d["results"]:
    w = r["wallNanoseconds"]
    print("  result", r["destination"], r["direction"], r["size"], "wall best %.1f median %.1f us" % (min(w) / 1e3, med(w) / 1e3))
for p in d["syncProbe"]:
    print("  probe", p["method"], p["size"], "p10 %.1f median %.1f p90 %.1f submit %.1f wait %.1f" % (p["p10Microseconds"],
          p["medianMicroseconds"], p["p90Microseconds"], p.get("submitMedianMicroseconds") or 0, p.get("waitMedianMicroseconds") or 0))'
for cpu in none "$irq_cpu" $(( (irq_cpu + 5) % $(nproc) )) $(( (irq_cpu + 11) % $(nproc) )); do
  pin=(); [[ $cpu == none ]] || pin=(taskset -c "$cpu")
  echo "=== gpu-bench pinned to cpu $cpu" >> "$D"
  "${pin[@]}" "$P/vkverbs" gpu-bench --json --min 4096 --max 1048576 --factor 256 --directions d2h --destinations host-visible,staged \
    --chunk 16777216 -r 50 --probe-sizes 4096 --probe-iterations 500 2>/dev/null | python3 -c "$summary" >> "$D" 2>&1
  echo "=== vk_submit_probe pinned to cpu $cpu" >> "$D"
  "${pin[@]}" "$CARRY/vk_submit_probe" --iterations 500 --sizes 4096 | cut -c1-260 >> "$D" 2>&1
done
