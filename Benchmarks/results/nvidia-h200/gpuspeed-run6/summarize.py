#!/usr/bin/env python3
"""Ratio tables (Vulkan / CuPy, best of the run's copies) from one device call's gpu-bench.json,
variants.txt (each "=== ARGS" line followed by one gpu-bench JSON) and cuda.json (cuda2.json too,
when there: a second CuPy run of the same call, for the spread). Usage: summarize.py DIR > tables.md"""
import json, sys, os

d = sys.argv[1]
def load(name):
    p = os.path.join(d, name)
    return json.load(open(p)) if os.path.exists(p) else None

runs = [("default", load("gpu-bench.json"))]
vt = os.path.join(d, "variants.txt")
if os.path.exists(vt):
    name, buf = None, []
    for line in open(vt):
        if line.startswith("=== "):
            if name is not None and buf:
                try: runs.append((name, json.loads("".join(buf))))
                except ValueError: pass
            name, buf = line[4:].strip(), []
        else:
            buf.append(line)
    if name is not None and buf:
        try: runs.append((name, json.loads("".join(buf))))
        except ValueError: pass
cudas = [c for c in (load("cuda.json"), load("cuda2.json")) if c]

def fmt(n):
    for unit, s in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << s and n % (1 << s) == 0: return f"{n >> s} {unit}"
    return f"{n} B"

def cuda_index(c):
    return {(r["destination"], r["direction"], r["size"]): r for r in c["results"]}
cidx = [cuda_index(c) for c in cudas]

def key(r):
    k = r["destination"]
    if r.get("chunkSize"): k += f" {fmt(r['chunkSize'])}x{r['slots']}"
    if r.get("copier"): k += f" ({r['copier']})"
    return k

field = sys.argv[2] if len(sys.argv) > 2 else "wallUntimedBestGBps"
print(f"Ratio Vulkan / CuPy of `{field}` (best of each run's copies); CuPy: cuda.json"
      + (", in parentheses against cuda2.json (a second CuPy run in the same call)" if len(cidx) > 1 else "") + ".")
for name, run in runs:
    if not run: continue
    rows = {}
    for r in run["results"]:
        rows.setdefault((key(r), r["direction"]), {})[r["size"]] = r
    sizes = run["sizes"]
    print(f"\n### gpu-bench {name}\n")
    fam = run.get("copyQueue") or {}
    print(f"closing: {run.get('closingBarrier')}; copy family {fam.get('family')} below 16 MiB, {fam.get('largeFamily')} from there\n")
    print("| destination | dir | " + " | ".join(fmt(s) for s in sizes) + " |")
    print("|---|---|" + "---:|" * len(sizes))
    for (k, direction), by in sorted(rows.items()):
        cu = "registered" if k.startswith("host-import") else "pinned"
        cells = []
        for s in sizes:
            r = by.get(s)
            vals = [r.get(field) / c[(cu, direction, s)][field] for c in cidx
                    if r and r.get(field) and (cu, direction, s) in c and c[(cu, direction, s)].get(field)]
            if not vals: cells.append("-"); continue
            cell = f"{vals[0]:.2f}" + (f" ({vals[1]:.2f})" if len(vals) > 1 else "")
            if not r.get("verified", True): cell += " UNVERIFIED"
            cells.append(cell)
        print(f"| {k} | {direction} | " + " | ".join(cells) + " |")
