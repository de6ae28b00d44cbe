#!/usr/bin/env python3
"""Per-iteration cost of a ping-pong client from valgrind runs, with waiting left out.

Usage: iteration-cost.py [--top K] N1 DIR1 N2 DIR2a DIR2b

Each DIR holds one client run under valgrind (see Benchmarks/iteration-cost-guest): callgrind.out
(callgrind --dump-instr=yes --compress-pos=no --compress-strings=no) and valgrind.log
(--trace-syscalls=yes). DIR1 ran N1 iterations, DIR2a and DIR2b N2 each.

The measure (the same for every tool): an instruction (object, address) is *timing-independent*
when it ran as many times in DIR2a as in DIR2b. A system call is counted as an execution of a
`syscall` instruction (the instruction's object and address: libc's `write`, `poll`, ...), so the
same rule, and the same collection windows below, apply to system calls as to instructions. Busy-poll
loops, timeouts and progress reports run as often as the waits last, which the emulator decides,
so they differ between two runs of the same count and are left out; everything a tool does per
message (posting, the completion it reaps, its bookkeeping) runs the same number of times whatever
the timing and is kept. Per iteration = (count in DIR2a - count in DIR1) / (N2 - N1) over the
timing-independent ones: setup, connection and teardown cancel. What was left out is reported
too (its per-iteration figure depends on the timing of that run).

What callgrind did not collect is not here at all: the guest switches it off inside each tool's
formatted output of the result and vkverbs' control-message waits (Benchmarks/iteration-cost-guest),
work whose amount the values or a wait decide and which could otherwise agree in both N2 runs by
chance and pass the rule above. That holds for system calls too: valgrind's own log of system calls
(--trace-syscalls) lists every call, collected or not, so it is not what is counted. It had let
two such calls through as 0.001 per iteration where they happened to agree in both N2 runs:
vkverbs' `poll` of its connection events every 4096 spins of its control wait, and perftest's
`write` to standard error of "Correlation coefficient r^2 ... < 0.9" from its clock calibration
inside `__fprintf_chk` (zero to two times a run, as the emulator's timing decides). The log still
gives each call's name and first argument (a file descriptor) for the -top listing.

Time-based work that shares code with the per-message work defeats the rule: vkverbs' progress
report (every 2 s: a line on standard error and a heartbeat post through the same rxe post as the
ping-pong's) either drops the post (a different number of reports in DIR2a and DIR2b) or adds the
first report's one-time cost (one report in each N2 run, none in DIR1). So the writes to
standard error of the three runs are printed too (stderr_writes=N1/N2a/N2b); a vkverbs point
with any is not a valid count.

Prints one line `key=value ...` on stdout and, with --top, the K costliest functions per iteration.
"""
import collections
import os
import re
import struct
import sys

SYSCALL = re.compile(r"^SYSCALL\[\d+,\d+\]\(\d+\) (sys_\w+) \( ?([^,)]*)")
# valgrind prints pointers in hex and descriptors, flags and sizes in decimal.
DECIMAL = re.compile(r"^-?\d+$")


def syscall_key(name, first):
    """A system call's key: its name, and its first argument when that is a decimal number (a
    file descriptor, a clock id, a flag), never when it is a pointer: where a buffer or a stack
    frame lands differs between runs, so the same call would look like two."""
    first = first.strip()
    return (name, first if DECIMAL.match(first) else "")


def callgrind(path):
    """Instruction counts per (object, address) and the function each address belongs to."""
    counts = collections.Counter()
    owner = {}
    ob, fn = "?", "?"
    after_calls = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("0x"):
                if after_calls:  # the inclusive cost of a call: not this instruction's own
                    after_calls = False
                    continue
                parts = line.split()
                key = (ob, int(parts[0], 16))
                counts[key] += int(parts[-1])
                owner[key] = fn
            elif line.startswith("calls="):
                after_calls = True
            elif line.startswith("ob="):
                ob = line[3:].strip()
            elif line.startswith("fn="):
                fn = line[3:].strip()
    return counts, owner


def syscall_sites(counts, newest):
    """The (object, address) keys of `counts` that are `syscall` instructions (bytes 0f 05), read
    from each object's file at the address's place in its loadable segments. The objects must not
    have changed since the run (`newest`: the run's callgrind.out time), or the addresses would
    point into another build."""
    sites = set()
    by_object = collections.defaultdict(list)
    for ob, addr in counts:
        by_object[ob].append(addr)
    for ob, addrs in by_object.items():
        try:
            with open(ob, "rb") as f:
                data = f.read()
            if os.path.getmtime(ob) > newest:
                sys.exit(f"iteration-cost: {ob} changed after the run; its addresses cannot be read")
        except OSError:
            continue  # not a file (valgrind's own names for anonymous code): no syscall site to find
        if data[:4] != b"\x7fELF" or data[4] != 2:
            continue
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
        loads = []
        for k in range(phnum):
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + k * phentsize)
            if p_type == 1:  # PT_LOAD
                loads.append((p_vaddr, p_filesz, p_offset))
        for addr in addrs:
            for vaddr, size, offset in loads:
                if vaddr <= addr < vaddr + size:
                    at = offset + addr - vaddr
                    if data[at:at + 2] == b"\x0f\x05":
                        sites.add((ob, addr))
                    break
    return sites


def syscalls(path):
    counts = collections.Counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = SYSCALL.match(line)
            if m:
                counts[syscall_key(m.group(1), m.group(2))] += 1
    return counts


def stderr_writes(counts):
    """How many writes the run made to its standard error (vkverbs: its time-based progress reports)."""
    return counts.get(("sys_write", "2"), 0)


def split(c1, c2a, c2b, n1, n2):
    """(timing-independent per iteration, left-out per iteration, per-key independent deltas)."""
    span = n2 - n1
    kept, left, per_key = 0, 0, {}
    for key in set(c1) | set(c2a) | set(c2b):
        delta = c2a.get(key, 0) - c1.get(key, 0)
        if c2a.get(key, 0) == c2b.get(key, 0):
            kept += delta
            per_key[key] = delta
        else:
            left += delta
    return kept / span, left / span, per_key


def main(argv):
    top = 0
    if len(argv) > 1 and argv[1] == "--top":
        top = int(argv[2])
        argv = argv[:1] + argv[3:]
    if len(argv) != 6:
        sys.exit(__doc__)
    n1, d1, n2, d2a, d2b = int(argv[1]), argv[2], int(argv[3]), argv[4], argv[5]
    if n2 <= n1:
        sys.exit("iteration-cost: N2 must be larger than N1")
    (i1, own), (i2a, own2), (i2b, own3) = (callgrind(d + "/callgrind.out") for d in (d1, d2a, d2b))
    own.update(own2)
    own.update(own3)
    oldest = min(os.path.getmtime(d + "/callgrind.out") for d in (d1, d2a, d2b))
    sites = syscall_sites(set(i1) | set(i2a) | set(i2b), oldest)
    s1, s2a, s2b = ({k: v for k, v in c.items() if k in sites} for c in (i1, i2a, i2b))
    instr, instr_left, per_instr = split(i1, i2a, i2b, n1, n2)
    sysc, sys_left, per_sys = split(s1, s2a, s2b, n1, n2)
    names = ";".join(f"{own.get(k, '?')}:{v / (n2 - n1):.3f}" for k, v in sorted(per_sys.items()) if v)
    # valgrind's log: every system call by name and first argument, collected or not (information).
    t1, t2a, t2b = (syscalls(d + "/valgrind.log") for d in (d1, d2a, d2b))
    reports = "/".join(str(stderr_writes(c)) for c in (t1, t2a, t2b))
    varied = sorted(k for k in set(t1) | set(t2a) | set(t2b) if not (t1[k] == t2a[k] == t2b[k]))
    print(f"instructions={instr:.1f} instructions_waiting={instr_left:.1f} syscalls={sysc:.3f} "
          f"syscalls_waiting={sys_left:.3f} syscall_kinds={names or '-'} stderr_writes={reports}")
    if top:
        # The counted system calls per site (collected executions N1/N2a/N2b), then every call of
        # valgrind's log, collected or not, whose count was not the same in all three runs.
        for k in sorted(sites, key=lambda k: (k[0], k[1])):
            c = (s1.get(k, 0), s2a.get(k, 0), s2b.get(k, 0))
            if len(set(c)) > 1:
                how = "kept" if c[1] == c[2] else "waiting"
                print(f"  syscall site {k[0].rsplit('/', 1)[-1]} {own.get(k, '?')} {k[1]:#x}: {c[0]}/{c[1]}/{c[2]} ({how})")
        for k in varied:
            print(f"  syscall log {k[0]}({k[1]}): {t1[k]}/{t2a[k]}/{t2b[k]}")
        per_fn = collections.Counter()
        for key, delta in per_instr.items():
            per_fn[(key[0].rsplit("/", 1)[-1], own.get(key, "?"))] += delta
        for (ob, fn), delta in per_fn.most_common(top):
            print(f"  {delta / (n2 - n1):9.1f}  {ob}  {fn}")


if __name__ == "__main__":
    main(sys.argv)
