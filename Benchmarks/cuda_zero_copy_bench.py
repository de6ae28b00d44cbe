#!/usr/bin/env python3
"""CUDA's counterpart of `gpu-bench --copier shader`: a kernel (SMs, not the copy engine) copies
between a cudaMalloc'd buffer and host memory mapped into the GPU's address space, 16 bytes per
thread and step, each way; the GPU time (CUDA events) per size, best of -r, in GB/s (1e9 B/s).
Beside it, cudaMemcpyAsync (the copy engine) on the same memory, for the same sizes.

Host memory: "pinned-mapped" (cudaHostAlloc with cudaHostAllocMapped) and "registered-mapped"
(4 KiB anonymous pages with cudaHostRegisterMapped). One JSON object per line on stdout.

If a CUDA kernel through mapped host memory tops out where Vulkan's copy shader and copy engine
do (52.7 GB/s d2h on an H200, docs/nvidia-results.md) while CUDA's copy engine gets more, the
difference lies in how the copy engine reaches host memory, not in the memory's mapping.

  python3 Benchmarks/cuda_zero_copy_bench.py [--sizes 268435456,1073741824] [-r 10] [--blocks 1056]
"""
import argparse
import ctypes
import json
import mmap

SOURCE = r"""
extern "C" __global__ void copy16(const uint4 *src, uint4 *dst, unsigned long long n) {
    unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = src[i];
}
"""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=f"{16 << 20},{256 << 20},{1 << 30}")
    p.add_argument("-r", "--repetitions", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--blocks", type=int, default=132 * 8)
    p.add_argument("--threads", type=int, default=256)
    args = p.parse_args()
    import cupy as cp
    import numpy as np

    rt = cp.cuda.runtime
    kernel = cp.RawKernel(SOURCE, "copy16")
    sizes = [int(s) for s in args.sizes.split(",")]
    largest = max(sizes)
    dev = cp.empty(largest, dtype=cp.uint8)
    stream = cp.cuda.Stream(non_blocking=True)
    start, end = cp.cuda.Event(), cp.cuda.Event()
    hosts = {}
    pinned_ptr = rt.hostAlloc(largest, 2)  # cudaHostAllocMapped
    hosts["pinned-mapped"] = pinned_ptr
    m = mmap.mmap(-1, largest, flags=mmap.MAP_PRIVATE)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    arr = np.frombuffer(m, dtype=np.uint8)
    arr[:] = 0
    rt.hostRegister(arr.ctypes.data, largest, 2)  # cudaHostRegisterMapped
    hosts["registered-mapped"] = arr.ctypes.data
    for name, hptr in hosts.items():
        dptr = hptr  # Unified addressing (every 64-bit CUDA platform): the host address is the device's too.
        for direction in ("d2h", "h2d"):
            for size in sizes:
                src, dst = (dev.data.ptr, dptr) if direction == "d2h" else (dptr, dev.data.ptr)
                dev[:size].fill(0x5A if direction == "d2h" else 0)
                ctypes.memset(hptr, 0 if direction == "d2h" else 0x3C, size)
                cp.cuda.Device().synchronize()
                out = {"host": name, "direction": direction, "size": size, "blocks": args.blocks, "threads": args.threads}
                for how in ("kernel", "memcpy"):
                    gpu = []
                    for n in range(args.warmup + args.repetitions):
                        start.record(stream)
                        if how == "kernel":
                            kernel((args.blocks,), (args.threads,), (cp.uint64(src), cp.uint64(dst), cp.uint64(size // 16)),
                                   stream=stream)
                        else:
                            rt.memcpyAsync(dst, src, size, 4, stream.ptr)  # cudaMemcpyDefault
                        end.record(stream)
                        stream.synchronize()
                        if n >= args.warmup:
                            gpu.append(cp.cuda.get_elapsed_time(start, end) * 1e6)
                    out[how + "BestGBps"] = round(size / min(gpu), 3)
                    out[how + "MedianGBps"] = round(size / sorted(gpu)[len(gpu) // 2], 3)
                if direction == "d2h":
                    ends = ctypes.string_at(hptr, 1) + ctypes.string_at(hptr + size - 1, 1)
                    out["verified"] = ends == b"\x5a\x5a"
                else:
                    out["verified"] = int(dev[0]) == 0x3C and int(dev[size - 1]) == 0x3C
                print(json.dumps(out), flush=True)
    rt.hostUnregister(arr.ctypes.data)
    rt.freeHost(pinned_ptr)


if __name__ == "__main__":
    main()
