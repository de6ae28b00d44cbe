#!/usr/bin/env bash
# gpuspeed-run7, first device call (pages/): does the host page size set the copy engine's rate into
# host memory? vk_hostmem_probe (Vulkan: driver host memory, imported 4 KiB / memalign / THP / hugetlb
# pages) and cuda_hostmem_bench.py (CuPy: pinned, registered 4 KiB / THP / hugetlb) in one call,
# twice each, interleaved; then vk_submit_probe for the small-copy floor. Travels as .nvidia-carry/run.sh.
set -u
C=$PWD/.nvidia-carry P=/tmp/vkp E=$OUT/env.txt L=$OUT/log.txt
mkdir -p $P/root $P/fallback $P/extra
for d in "$C"/debs/*.deb; do dpkg -x "$d" $P/root; done
for d in "$C"/debs/fallback/*.deb; do dpkg -x "$d" $P/fallback; done
known=$(ldconfig -p | awk 'NR > 1 {print $1}')
for lib in $(find $P/fallback -name 'lib*.so.[0-9]*' -type l); do
  n=$(basename "$lib"); grep -qxF "$n" <<< "$known" || [[ -e /usr/local/nvidia/lib64/$n ]] || ln -sf "$lib" $P/extra/"$n"
done
SYSLD=${LD_LIBRARY_PATH-}
export LD_LIBRARY_PATH=$P/root/usr/lib/x86_64-linux-gnu${SYSLD:+:$SYSLD}:$P/extra
"$C"/vk_hostmem_probe --sizes 4096 --iterations 1 --only none > /dev/null 2>&1 ||
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
cpu=$(awk 'NR == 1 {n = NF} /nvidia/ {for (i = 2; i <= n + 1; i++) if ($i + 0 > 0) busy[i - 2] = 1}
           END {for (c = n - 1; c >= 0; c--) if (!(c in busy)) {print c; exit}}' /proc/interrupts)
PIN=(taskset -c "${cpu:-15}")
{
  date -u; uname -a; head -1 /proc/driver/nvidia/version; echo "pinned: ${PIN[*]} VK_DRIVER_FILES=${VK_DRIVER_FILES-}"
  for f in enabled defrag shmem_enabled khugepaged/defrag hpage_pmd_size; do echo "thp $f: $(cat /sys/kernel/mm/transparent_hugepage/$f 2>&1)"; done
  grep -i -e huge -e MemTotal /proc/meminfo; ls /sys/kernel/mm/hugepages/
  echo "cmdline: $(cat /proc/cmdline)"; echo "iommu: $(ls /sys/class/iommu 2>&1 | tr '\n' ' ') groups: $(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l)"
  lspci -nn 2>/dev/null | head; echo "--- nvidia params"; cat /proc/driver/nvidia/params 2>&1 | head -60
} > "$E" 2>&1
echo 1100 > /proc/sys/vm/nr_hugepages; echo "nr_hugepages set: $(cat /proc/sys/vm/nr_hugepages)" >> "$E"
if grep -q '\[never\]' /sys/kernel/mm/transparent_hugepage/enabled; then
  echo madvise > /sys/kernel/mm/transparent_hugepage/enabled; echo "thp was never; set: $(cat /sys/kernel/mm/transparent_hugepage/enabled)" >> "$E"
fi
cuda() { timeout 200 "${PIN[@]}" env LD_LIBRARY_PATH="$SYSLD" PYTHONUNBUFFERED=1 python3 "$C"/cuda_hostmem_bench.py "$@"; }
vk() { timeout 200 "${PIN[@]}" "$C"/vk_hostmem_probe "$@"; }
s=$SECONDS
cuda >> $OUT/cuda-hostmem.jsonl 2>> $L; echo "cuda 1: rc $? at $((SECONDS - s)) s" >> $L
vk --dedicated >> $OUT/vk-hostmem.jsonl 2>> $L; echo "vk 1: rc $? at $((SECONDS - s)) s" >> $L
cuda >> $OUT/cuda-hostmem.jsonl 2>> $L; echo "cuda 2: rc $? at $((SECONDS - s)) s" >> $L
vk >> $OUT/vk-hostmem.jsonl 2>> $L; echo "vk 2: rc $? at $((SECONDS - s)) s" >> $L
vk --family 4 --sizes 1048576,16777216,268435456 --only driver-coherent,import-4k,import-thp,import-hugetlb >> $OUT/vk-hostmem-family4.jsonl 2>> $L
echo "vk family 4: rc $? at $((SECONDS - s)) s" >> $L
grep -i huge /proc/meminfo >> "$E"
timeout 200 "${PIN[@]}" "$C"/vk_submit_probe --iterations 500 --sizes 4096,65536 > $OUT/submit-probe.jsonl 2>> $L
echo "submit probe: rc $? at $((SECONDS - s)) s" >> $L
