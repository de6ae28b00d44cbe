#!/usr/bin/env python3
"""CUDA's copy bandwidth between device and host memory, the reference for `vkverbs gpu-bench`.

For each size (4 KiB to 1 GiB, powers of 4 by default) and direction (d2h: a device buffer from
cudaMalloc through CuPy into host memory; h2d: host memory into the device buffer) copies with
cudaMemcpyAsync on a non-blocking stream:
  pinned      host memory from cudaHostAlloc (cupyx.empty_pinned): like Vulkan's mapped host-visible memory
  registered  page-aligned anonymous memory pinned with cudaHostRegister: like Vulkan's imported host pointer
Each copy is timed by CUDA events around it (GPU time) and by the wall clock around the copy and the
stream synchronisation; then as many copies again without the events, by the wall clock only ("untimed":
the copy as an application issues it; gpu-bench likewise without its timestamps). --warmup copies first,
then --repetitions measured; best and median GB/s (1e9 B/s).
--probe-sizes adds the cost of one copy (d2h into pinned memory) and stream synchronisation, the median
over --probe-iterations copies, the counterpart of `gpu-bench --probe-sizes`.

  python3 Benchmarks/cuda_copy_bench.py [--json] [--out FILE]
  python3 Benchmarks/cuda_copy_bench.py --compare gpu-bench.json cuda.json   # markdown table, no GPU needed

--compare reads `vkverbs gpu-bench --json` output and this script's JSON and prints, per direction and
size, Vulkan's best GB/s next to CUDA's and the ratio (Vulkan / CUDA) for GPU-timed, wall-clock and untimed
wall-clock numbers.
"""
import argparse
import json
import mmap
import statistics
import sys
import time


def sizes(lo, hi, factor):
    out, s = [], lo
    while s <= hi:
        out.append(s)
        s *= factor
    return out


def summarize(name, direction, size, gpu_ns, wall_ns, verified):
    def rate(ns):
        return size / ns if ns > 0 else 0.0
    return {
        "destination": name, "direction": direction, "size": size,
        "gpuNanoseconds": gpu_ns, "wallNanoseconds": wall_ns,
        "gpuBestGBps": rate(min(gpu_ns)), "gpuMedianGBps": rate(statistics.median(gpu_ns)),
        "wallBestGBps": rate(min(wall_ns)), "wallMedianGBps": rate(statistics.median(wall_ns)),
        "verified": verified,
    }


def bench(args):
    import cupy as cp
    import cupyx
    import numpy as np

    rt = cp.cuda.runtime
    device_to_host = 2  # cudaMemcpyDeviceToHost
    all_sizes = sizes(args.min, args.max, args.factor)
    largest = all_sizes[-1]
    cp.cuda.Device(args.device).use()
    props = rt.getDeviceProperties(args.device)
    src = cp.empty(largest, dtype=cp.uint8)
    stream = cp.cuda.Stream(non_blocking=True)
    start, end = cp.cuda.Event(), cp.cuda.Event()

    destinations = {}
    if "pinned" in args.destinations:
        destinations["pinned"] = cupyx.empty_pinned((largest,), dtype=np.uint8)
    registered_map = None
    if "registered" in args.destinations:
        registered_map = mmap.mmap(-1, largest)
        arr = np.frombuffer(registered_map, dtype=np.uint8)
        arr[:] = 0  # Touch every page before pinning.
        rt.hostRegister(arr.ctypes.data, largest, 0)
        destinations["registered"] = arr

    kinds = {"d2h": 2, "h2d": 1}  # cudaMemcpyDeviceToHost, cudaMemcpyHostToDevice
    results = []
    for name, host in destinations.items():
        ptr = host.ctypes.data
        for direction in args.directions.split(","):
            kind = kinds[direction]
            for size in all_sizes:
                marker = (size * 2654435761 + (0 if direction == "d2h" else 7)) & 0xFF | 1
                if direction == "d2h":
                    src[:size].fill(marker)
                    dst, srcp = ptr, src.data.ptr
                else:
                    host[:size] = marker
                    src[:size].fill(0)
                    dst, srcp = src.data.ptr, ptr
                cp.cuda.Device().synchronize()
                gpu, wall = [], []
                for n in range(args.warmup + args.repetitions):
                    t0 = time.perf_counter_ns()
                    start.record(stream)
                    rt.memcpyAsync(dst, srcp, size, kind, stream.ptr)
                    end.record(stream)
                    stream.synchronize()
                    t1 = time.perf_counter_ns()
                    if n >= args.warmup:
                        gpu.append(cp.cuda.get_elapsed_time(start, end) * 1e6)  # ms -> ns
                        wall.append(float(t1 - t0))
                # The same copies without the events: the copy as an application issues it.
                untimed = []
                for n in range(args.warmup + args.repetitions):
                    t0 = time.perf_counter_ns()
                    rt.memcpyAsync(dst, srcp, size, kind, stream.ptr)
                    stream.synchronize()
                    t1 = time.perf_counter_ns()
                    if n >= args.warmup:
                        untimed.append(float(t1 - t0))
                if direction == "d2h":
                    verified = bool(host[0] == marker and host[size - 1] == marker and host[size // 2] == marker)
                else:
                    verified = bool(int(src[0]) == marker and int(src[size - 1]) == marker and int(src[size // 2]) == marker)
                r = summarize(name, direction, size, gpu, wall, verified)
                r["wallUntimedNanoseconds"] = untimed
                r["wallUntimedBestGBps"] = size / min(untimed) if min(untimed) > 0 else 0.0
                r["wallUntimedMedianGBps"] = size / statistics.median(untimed) if statistics.median(untimed) > 0 else 0.0
                results.append(r)
                print(f"cuda {name} {direction} {size} B: GPU best {r['gpuBestGBps']:.2f}, wall best {r['wallBestGBps']:.2f} GB/s",
                      file=sys.stderr)
    probe = []
    if args.probe_sizes and "pinned" in destinations:
        host = destinations["pinned"]
        for size in args.probe_sizes:
            samples = []
            for n in range(args.probe_iterations + 20):
                t0 = time.perf_counter_ns()
                rt.memcpyAsync(host.ctypes.data, src.data.ptr, size, device_to_host, stream.ptr)
                stream.synchronize()
                t1 = time.perf_counter_ns()
                if n >= 20:
                    samples.append((t1 - t0) / 1e3)
            samples.sort()
            at = lambda q: samples[min(len(samples) - 1, int(len(samples) * q))]
            probe.append({"method": "cuda-memcpyAsync-synchronize", "size": size, "iterations": args.probe_iterations,
                          "medianMicroseconds": at(0.5), "p10Microseconds": at(0.1), "p90Microseconds": at(0.9)})
            print(f"cuda probe {size} B: median {at(0.5):.1f} us", file=sys.stderr)
    if registered_map is not None:
        rt.hostUnregister(destinations["registered"].ctypes.data)
    name = props["name"]
    return {
        "device": name.decode() if isinstance(name, bytes) else str(name),
        "cudaRuntimeVersion": rt.runtimeGetVersion(),
        "cudaDriverVersion": rt.driverGetVersion(),
        "cupyVersion": cp.__version__,
        "repetitions": args.repetitions, "warmup": args.warmup, "sizes": all_sizes,
        "results": results, "syncProbe": probe, "unit": "GB/s = 1e9 bytes/s",
    }


def fmt_size(n):
    for unit, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= unit:
            return f"{n // unit} {name}" if n % unit == 0 else f"{n / unit:.1f} {name}"
    return f"{n} B"


def compare(vk_path, cuda_path):
    vk = json.load(open(vk_path))
    cu = json.load(open(cuda_path))

    def index(results):
        out = {}
        for r in results:
            key = r["destination"] + (f"/{fmt_size(r['chunkSize'])}x{r.get('slots', 0)}" if r.get("chunkSize") else "")
            out[(key, r.get("direction", "d2h"), r["size"])] = r
        return out

    v, c = index(vk["results"]), index(cu["results"])
    pairs = [("host-import", "registered"), ("host-visible", "pinned")]
    pairs += [(k, "pinned") for k in sorted({k for k, _, _ in v if k.startswith("staged/")},
                                            key=lambda k: (int(k.split("/")[1].split(" ")[0]) * (1024 if "MiB" in k else 1), k))]
    directions = [d for d in ("d2h", "h2d") if any(dd == d for _, dd, _ in v)]
    lines = [
        f"Vulkan: {vk['device']}; CUDA: {cu['device']}. Best of {vk['repetitions']} (Vulkan) and "
        f"{cu['repetitions']} (CUDA) copies per size, GB/s = 1e9 B/s; ratio = Vulkan / CUDA.",
    ]

    def ratio(x, y):
        return f"{x / y:.2f}" if y else "-"

    for d in directions:
        for a, b in pairs:
            if not any(k == a and dd == d for k, dd, _ in v):
                continue
            lines += ["", f"{d}: Vulkan {a} vs CUDA {b}:", "",
                      "| size | Vulkan GPU | CUDA GPU | ratio GPU | Vulkan wall | CUDA wall | ratio wall "
                      "| Vulkan untimed | CUDA untimed | ratio untimed |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for size in vk["sizes"]:
                rv, rc = v.get((a, d, size)), c.get((b, d, size))
                if not rv:
                    continue
                uv, uc = rv.get("wallUntimedBestGBps"), (rc or {}).get("wallUntimedBestGBps")
                if rc:
                    cells = [f"{rv['gpuBestGBps']:.2f}", f"{rc['gpuBestGBps']:.2f}", ratio(rv['gpuBestGBps'], rc['gpuBestGBps']),
                             f"{rv['wallBestGBps']:.2f}", f"{rc['wallBestGBps']:.2f}", ratio(rv['wallBestGBps'], rc['wallBestGBps'])]
                else:
                    cells = [f"{rv['gpuBestGBps']:.2f}", "-", "-", f"{rv['wallBestGBps']:.2f}", "-", "-"]
                cells += [f"{uv:.2f}" if uv else "-", f"{uc:.2f}" if uc else "-", ratio(uv, uc) if uv and uc else "-"]
                lines.append(f"| {fmt_size(size)} | " + " | ".join(cells) + " |")
    # The targets: wall clock >= 0.95x CUDA at >= 1 MiB and >= 0.8x at 4-64 KiB, per pair and direction.
    lines.append("")
    for d in directions:
        for a, b in pairs:
            for label, lo, hi, target in (("sizes >= 1 MiB", 1 << 20, 1 << 62, 0.95), ("4-64 KiB", 4 << 10, 64 << 10, 0.8)):
                for clock, field in (("wall clock", "wallBestGBps"), ("untimed wall clock", "wallUntimedBestGBps")):
                    ratios = [v[(a, d, s)][field] / c[(b, d, s)][field]
                              for s in vk["sizes"] if lo <= s <= hi and (a, d, s) in v and (b, d, s) in c
                              and c[(b, d, s)].get(field) and v[(a, d, s)].get(field)]
                    if ratios:
                        verdict = "met" if min(ratios) >= target else "NOT met"
                        lines.append(f"- {d} {a} vs CUDA {b}, {clock}, {label}: lowest ratio "
                                     f"{min(ratios):.2f} -> target {target}x {verdict}")
    probes = vk.get("syncProbe") or []
    cuda_probe = {p["size"]: p for p in cu.get("syncProbe") or []}
    if probes:
        lines += ["", "Submission probe: one copy d2h into host memory, submitted and waited for, median us per copy:", ""]
        methods = list(dict.fromkeys(p["method"] for p in probes))
        lines.append("| size | " + " | ".join(methods) + " | CUDA |")
        lines.append("|---:|" + "---:|" * (len(methods) + 1))
        for size in sorted({p["size"] for p in probes}):
            row = {p["method"]: p["medianMicroseconds"] for p in probes if p["size"] == size}
            cuda = cuda_probe.get(size)
            lines.append(f"| {fmt_size(size)} | " + " | ".join(f"{row[m]:.1f}" if m in row else "-" for m in methods)
                         + (f" | {cuda['medianMicroseconds']:.1f} |" if cuda else " | - |"))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--min", type=int, default=4 << 10)
    p.add_argument("--max", type=int, default=1 << 30)
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("-r", "--repetitions", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--destinations", default="pinned,registered")
    p.add_argument("--directions", default="d2h,h2d")
    p.add_argument("--probe-sizes", type=int, nargs="*", default=[])
    p.add_argument("--probe-iterations", type=int, default=2000)
    p.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--compare", nargs=2, metavar=("VULKAN_JSON", "CUDA_JSON"),
                   help="print the Vulkan/CUDA markdown table from two JSON files and exit")
    args = p.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    report = bench(args)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"cuda copy bench: {report['device']}, CUDA runtime {report['cudaRuntimeVersion']}, GB/s = 1e9 B/s")
        print(f"{'destination':12} {'dir':4} {'size':>9} {'GPU best':>9} {'GPU med':>9} {'wall best':>9} {'wall med':>9}")
        for r in report["results"]:
            print(f"{r['destination']:12} {r['direction']:4} {fmt_size(r['size']):>9} {r['gpuBestGBps']:9.2f} {r['gpuMedianGBps']:9.2f} "
                  f"{r['wallBestGBps']:9.2f} {r['wallMedianGBps']:9.2f}")


if __name__ == "__main__":
    main()
