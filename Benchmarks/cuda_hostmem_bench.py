#!/usr/bin/env python3
"""CUDA's side of Benchmarks/vk_hostmem_probe.c: does the kind of host page set CUDA's copy rate?

Copies between a cudaMalloc'd buffer (CuPy) and host memory of several kinds, each way, with
cudaMemcpyAsync on a non-blocking stream, and reports per size the best GPU time (CUDA events) and
the best wall clock of the copy without events (copy + stream synchronisation), in GB/s (1e9 B/s):
  pinned          cudaHostAlloc (cupyx.empty_pinned), the allocator's own pages
  registered      Python's mmap.mmap (MAP_SHARED anonymous: shmem pages), touched, cudaHostRegister'd:
                  what cuda_copy_bench.py registers
  registered-4k   MAP_PRIVATE anonymous pages with MADV_NOHUGEPAGE (4 KiB pages), as Vulkan imports
  registered-thp  MAP_PRIVATE, 2 MiB aligned, MADV_HUGEPAGE before the first touch (transparent huge
                  pages)
  registered-hugetlb  MAP_HUGETLB, where the hugetlb pool has pages
For each it reports what /proc/self/smaps says of the mapping (AnonHugePages, Private_Hugetlb,
KernelPageSize). One JSON object per line on stdout.

  python3 Benchmarks/cuda_hostmem_bench.py [--sizes 1048576,...] [-r 10] [--only NAME,...]
"""
import argparse
import json
import mmap
import sys
import time

HUGE = 2 << 20
MAP_HUGETLB = 0x40000


def smaps_of(address):
    out = {}
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                if inside:
                    break
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
                if inside:
                    out["mapping"] = line.strip()
                continue
            if inside:
                key = line.split(":")[0]
                if key in ("Size", "Rss", "AnonHugePages", "Private_Hugetlb", "KernelPageSize"):
                    out[key + "KiB"] = int(line.split()[1])
    return out


def host_buffers(kind, size, np, cupyx):
    """(numpy array over the pages, keep-alive object, registered?) or None."""
    if kind == "pinned":
        arr = cupyx.empty_pinned((size,), dtype=np.uint8)
        arr[:] = 0
        return arr, None, False
    if kind == "registered":
        m = mmap.mmap(-1, size)
        arr = np.frombuffer(m, dtype=np.uint8)
        arr[:] = 0
        return arr, m, True
    if kind == "registered-4k":
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        m.madvise(mmap.MADV_NOHUGEPAGE)
        arr = np.frombuffer(m, dtype=np.uint8)
        arr[:] = 0
        return arr, m, True
    if kind == "registered-thp":
        m = mmap.mmap(-1, size + HUGE, flags=mmap.MAP_PRIVATE)
        base = np.frombuffer(m, dtype=np.uint8)
        offset = (-base.ctypes.data) % HUGE
        m.madvise(mmap.MADV_HUGEPAGE, offset, size)
        arr = base[offset:offset + size]
        arr[:] = 0
        return arr, (m, base), True
    if kind == "registered-hugetlb":
        try:
            m = mmap.mmap(-1, (size + HUGE - 1) // HUGE * HUGE, flags=mmap.MAP_PRIVATE | MAP_HUGETLB)
        except OSError as e:
            print(f"cuda_hostmem_bench: MAP_HUGETLB: {e}", file=sys.stderr)
            return None
        arr = np.frombuffer(m, dtype=np.uint8)[:size]
        arr[:] = 0
        return arr, m, True
    raise ValueError(kind)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=f"{1 << 20},{16 << 20},{256 << 20},{1 << 30}")
    p.add_argument("-r", "--repetitions", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--only", default="pinned,registered,registered-4k,registered-thp,registered-hugetlb")
    args = p.parse_args()
    import cupy as cp
    import cupyx
    import numpy as np

    rt = cp.cuda.runtime
    sizes = [int(s) for s in args.sizes.split(",")]
    largest = max(sizes)
    dev = cp.empty(largest, dtype=cp.uint8)
    stream = cp.cuda.Stream(non_blocking=True)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    print(json.dumps({"cudaRuntimeVersion": rt.runtimeGetVersion(), "cudaDriverVersion": rt.driverGetVersion(),
                      "cupyVersion": cp.__version__}), flush=True)
    for kind in args.only.split(","):
        made = host_buffers(kind, largest, np, cupyx)
        if made is None:
            print(json.dumps({"host": kind, "skipped": "no pages of this kind"}), flush=True)
            continue
        arr, keep, register = made
        ptr = arr.ctypes.data
        if register:
            rt.hostRegister(ptr, largest, 0)
        pages = smaps_of(ptr)
        for direction, kindcode in (("d2h", 2), ("h2d", 1)):
            for i, size in enumerate(sizes):
                mark = (0x31 + 0x22 * i + (direction == "h2d")) & 0xFF
                if direction == "d2h":
                    dev[:size].fill(mark)
                    arr[0] = arr[size - 1] = 0
                    dst, src = ptr, dev.data.ptr
                else:
                    arr[0] = arr[size - 1] = mark
                    dev[:size].fill(0)
                    dst, src = dev.data.ptr, ptr
                cp.cuda.Device().synchronize()
                gpu, wall = [], []
                for n in range(args.warmup + args.repetitions):
                    start.record(stream)
                    rt.memcpyAsync(dst, src, size, kindcode, stream.ptr)
                    end.record(stream)
                    stream.synchronize()
                    if n >= args.warmup:
                        gpu.append(cp.cuda.get_elapsed_time(start, end) * 1e6)
                for n in range(args.warmup + args.repetitions):
                    t0 = time.perf_counter_ns()
                    rt.memcpyAsync(dst, src, size, kindcode, stream.ptr)
                    stream.synchronize()
                    t1 = time.perf_counter_ns()
                    if n >= args.warmup:
                        wall.append(float(t1 - t0))
                if direction == "d2h":
                    ok = int(arr[0]) == mark and int(arr[size - 1]) == mark
                else:
                    ok = int(dev[0]) == mark and int(dev[size - 1]) == mark
                gpu.sort()
                wall.sort()
                print(json.dumps({"host": kind, "direction": direction, "size": size, "iterations": args.repetitions,
                                  "gpuBestGBps": round(size / gpu[0], 3), "gpuMedianGBps": round(size / gpu[len(gpu) // 2], 3),
                                  "wallBestGBps": round(size / wall[0], 3), "wallMedianGBps": round(size / wall[len(wall) // 2], 3),
                                  "wallBestUs": round(wall[0] / 1e3, 2), "verified": ok, **pages}), flush=True)
        if register:
            rt.hostUnregister(ptr)
        del arr, keep


if __name__ == "__main__":
    main()
