/*
 * Examples/mpi/osu.c: osu_latency / osu_bw style measurements between rank pairs over
 * libvkverbs's groups (RDMA writes between registered host buffers), with the OSU benchmarks'
 * '#'-headed table, sizes 1 B .. --max-size (4 MiB by default).
 *
 * Ranks pair up as (0,1), (2,3), ...; with --pairs 1 (the default) only ranks 0 and 1 measure
 * and the others only take part in the group and the barriers; --pairs all measures every pair
 * at once (a rank left without a partner idles). The group connects each pair only
 * (vkv_group_create names the partner as the one neighbour); its allgather is MPI_Allgather.
 *
 *   latency  ping-pong of RDMA writes, as ib_write_lat does it: the even rank writes `size`
 *            bytes into its partner's inbox; the partner spins on the last byte of its inbox
 *            until it carries this iteration's mark, then writes back the same way. One-way
 *            latency = elapsed / (2 x iterations), in microseconds. (It relies, as perftest
 *            does, on the last byte of a write landing last: true of rxe and of the NICs
 *            perftest runs on.) Every byte of the last message of each size is checked.
 *   bw       the even rank posts --window writes (vkv_group_post_write) and waits for all of
 *            them (vkv_group_wait), --iterations times; MB/s = bytes / elapsed / 1e6 (a
 *            write's completion means its bytes are in the partner's memory: RC acknowledged
 *            it). The partner's inbox is checked after the last window.
 * With --pairs all, rank 0 prints the mean latency over the pairs, or the sum of their
 * bandwidths (as osu_multi_lat and osu_mbw_mr do).
 *
 * Usage: osu latency|bw [--device NAME] [--address ADDR] [--max-size BYTES] [--iterations N]
 *            [--large-iterations N] [--window N] [--pairs 1|all] [--timeout-ms N]
 *        --device / --address default to $VKVERBS_RDMA_DEVICE / $VKVERBS_FABRIC_ADDR.
 * Sizes above 8 KiB use --large-iterations (and, for bw, a window of at most 16), as the OSU
 * benchmarks cut their iterations for large messages. Exit status 0 only when every measuring
 * rank got through every size with correct bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vkverbs.h>

#define PROG "osu(mpi)"
#define LARGE 8192

static int rank = 0, size = 1;

struct options {
    int bw;
    const char *device_name, *address;
    uint64_t max_size;
    int iterations, large_iterations, window, all_pairs;
    int32_t timeout_ms;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int gather(const void *mine, void *all, size_t n, void *comm) {
    if (n > (size_t)0x7fffffff) return -1;
    return MPI_Allgather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, *(MPI_Comm *)comm);
}

static int say_error(const char *what, vkv_status s) {
    fprintf(stderr, PROG " rank %d: %s: %s: %s\n", rank, what, vkv_status_string(s), vkv_last_error_message());
    return 1;
}

static int everyone(int ok) {
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}

static uint8_t pattern(int owner, uint64_t i) { return (uint8_t)(i * 29u + 3u + (uint64_t)owner * 71u); }

/* Spins until the last byte of the inbox carries mark; 0 on time, 1 after timeout_ms. */
static int await_mark(volatile uint8_t *last, uint8_t mark, int32_t timeout_ms) {
    double end = now() + timeout_ms / 1000.0;
    for (unsigned spins = 0; *last != mark; spins++) {
        if ((spins & 1023) == 1023) {
            if (now() > end) return 1;
            sched_yield(); /* the peer's RDMA may need this CPU (software RoCE) */
        }
    }
    return 0;
}

static int usage(const char *argv0) {
    if (rank == 0)
        fprintf(stderr, "usage: %s latency|bw [--device NAME] [--address ADDR] [--max-size BYTES] [--iterations N]\n"
                        "          [--large-iterations N] [--window N] [--pairs 1|all] [--timeout-ms N]\n", argv0);
    MPI_Finalize();
    return 2;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    struct options o = {0, getenv("VKVERBS_RDMA_DEVICE"), getenv("VKVERBS_FABRIC_ADDR"), 4u << 20, 100, 10, 64, 0, 60000};
    if (argc < 2) return usage(argv[0]);
    if (!strcmp(argv[1], "bw")) o.bw = 1;
    else if (strcmp(argv[1], "latency")) return usage(argv[0]);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        long long n = v ? strtoll(v, &end, 10) : 0;
        int numeric = v && *v && end && !*end;
        if (!strcmp(a, "--device") && v) o.device_name = v, i++;
        else if (!strcmp(a, "--address") && v) o.address = v, i++;
        else if (!strcmp(a, "--max-size") && numeric && n >= 1 && n <= (64 << 20)) o.max_size = (uint64_t)n, i++;
        else if (!strcmp(a, "--iterations") && numeric && n >= 1 && n <= 1000000) o.iterations = (int)n, i++;
        else if (!strcmp(a, "--large-iterations") && numeric && n >= 1 && n <= 1000000) o.large_iterations = (int)n, i++;
        else if (!strcmp(a, "--window") && numeric && n >= 1 && n <= 1024) o.window = (int)n, i++;
        else if (!strcmp(a, "--timeout-ms") && numeric && n >= 1 && n <= 3600000) o.timeout_ms = (int32_t)n, i++;
        else if (!strcmp(a, "--pairs") && v && (!strcmp(v, "1") || !strcmp(v, "all"))) o.all_pairs = !strcmp(v, "all"), i++;
        else {
            if (rank == 0) fprintf(stderr, PROG ": bad argument '%s'%s%s\n", a, v ? " " : "", v ? v : "");
            return usage(argv[0]);
        }
    }
    if (size < 2 || !o.device_name || !o.address) {
        if (rank == 0) fprintf(stderr, PROG ": needs at least 2 ranks, --device and --address (or VKVERBS_RDMA_DEVICE, VKVERBS_FABRIC_ADDR)\n");
        return usage(argv[0]);
    }

    int partner = (rank ^ 1) < size ? (rank ^ 1) : -1;
    int measuring = partner >= 0 && (o.all_pairs || rank < 2);
    int initiator = measuring && rank % 2 == 0;
    int failed = 0;
    vkv_device *dev = NULL;
    vkv_memory *src = NULL, *inbox = NULL;
    vkv_group *group = NULL;
    uint8_t *src_bytes = NULL, *inbox_bytes = NULL;
    uint8_t descriptor[VKV_REMOTE_DESCRIPTOR_SIZE], remote[VKV_REMOTE_DESCRIPTOR_SIZE];
    vkv_status s;
    int ok = 1;

    if ((s = vkv_device_open(o.device_name, &dev)) != VKV_OK) ok = !say_error("vkv_device_open", s);
    if (ok && (posix_memalign((void **)&src_bytes, 4096, o.max_size) || posix_memalign((void **)&inbox_bytes, 4096, o.max_size))) {
        fprintf(stderr, PROG " rank %d: cannot allocate 2 x %llu bytes\n", rank, (unsigned long long)o.max_size);
        ok = 0;
    }
    if (ok) {
        for (uint64_t i = 0; i < o.max_size; i++) src_bytes[i] = pattern(rank, i);
        memset(inbox_bytes, 0, o.max_size);
    }
    if (ok && (s = vkv_memory_register_host(dev, src_bytes, o.max_size, VKV_ACCESS_LOCAL_WRITE, &src)) != VKV_OK)
        ok = !say_error("vkv_memory_register_host", s);
    if (ok && (s = vkv_memory_register_host(dev, inbox_bytes, o.max_size, VKV_ACCESS_REMOTE | VKV_ACCESS_LOCAL_WRITE, &inbox)) != VKV_OK)
        ok = !say_error("vkv_memory_register_host", s);
    if (ok && (s = vkv_memory_remote_descriptor(inbox, descriptor)) != VKV_OK) ok = !say_error("vkv_memory_remote_descriptor", s);
    if (!everyone(ok)) { failed = 1; goto out; }

    MPI_Comm comm = MPI_COMM_WORLD;
    int32_t neighbours[1] = {partner}, failed_member = -1;
    s = vkv_group_create(dev, o.address, rank, size, neighbours, partner >= 0 ? 1 : 0, descriptor, sizeof descriptor, gather,
                         &comm, o.timeout_ms, &failed_member, &group);
    if (s != VKV_OK) {
        say_error("vkv_group_create", s);
        fprintf(stderr, PROG " rank %d: member to blame: %d\n", rank, failed_member);
        ok = 0;
    }
    size_t got = 0;
    if (ok && partner >= 0 && ((s = vkv_group_descriptor(group, partner, remote, sizeof remote, &got)) != VKV_OK || got != sizeof remote))
        ok = !say_error("vkv_group_descriptor", s);
    if (!everyone(ok)) { failed = 1; goto out; }

    if (rank == 0) {
        printf("# OSU MPI-style RDMA Write %s Test (libvkverbs groups, %s)\n", o.bw ? "Bandwidth" : "Latency",
               o.all_pairs ? "every pair at once" : "ranks 0 and 1");
        printf("# %d rank(s); iterations %d (%d above %d bytes)%s\n", size, o.iterations, o.large_iterations, LARGE,
               o.bw ? "" : "; one-way latency of a write ping-pong");
        if (o.bw) printf("# window %d (at most 16 above %d bytes)\n", o.window, LARGE);
        printf("# Size      %s\n", o.bw ? "Bandwidth (MB/s)" : "Latency (us)");
        fflush(stdout);
    }

    for (uint64_t bytes = 1; bytes <= o.max_size && !failed; bytes *= 2) {
        int iterations = bytes > LARGE ? o.large_iterations : o.iterations;
        int skip = bytes > LARGE ? 1 : 10;
        int window = bytes > LARGE && o.window > 16 ? 16 : o.window;
        double elapsed = 0;
        ok = 1;
        memset(inbox_bytes, 0, bytes);
        MPI_Barrier(MPI_COMM_WORLD);
        if (measuring && !o.bw) {
            volatile uint8_t *last = inbox_bytes + bytes - 1;
            double t0 = now();
            for (int i = 0; i < skip + iterations && ok; i++) {
                uint8_t mark = (uint8_t)(i % 254 + 1);
                if (i == skip) t0 = now();
                if (!initiator && await_mark(last, mark, o.timeout_ms)) {
                    fprintf(stderr, PROG " rank %d: no message %d of %llu bytes within %d ms\n", rank, i, (unsigned long long)bytes, o.timeout_ms);
                    ok = 0;
                    break;
                }
                src_bytes[bytes - 1] = mark;
                if ((s = vkv_group_write(group, partner, src, 0, bytes, remote, 0, o.timeout_ms)) != VKV_OK) {
                    ok = !say_error("vkv_group_write", s);
                    break;
                }
                if (initiator && await_mark(last, mark, o.timeout_ms)) {
                    fprintf(stderr, PROG " rank %d: no answer %d of %llu bytes within %d ms\n", rank, i, (unsigned long long)bytes, o.timeout_ms);
                    ok = 0;
                }
            }
            elapsed = now() - t0;
            src_bytes[bytes - 1] = pattern(rank, bytes - 1); /* the mark goes; larger sizes send the pattern there */
            /* The last message: every byte the partner's pattern, but the mark. */
            for (uint64_t k = 0; ok && k + 1 < bytes; k++)
                if (inbox_bytes[k] != pattern(partner, k)) {
                    fprintf(stderr, PROG " rank %d: byte %llu of %llu is wrong\n", rank, (unsigned long long)k, (unsigned long long)bytes);
                    ok = 0;
                }
        } else if (initiator) {
            uint64_t ops[1024];
            double t0 = now();
            for (int i = 0; i < skip + iterations && ok; i++) {
                if (i == skip) t0 = now();
                int posted = 0;
                for (; posted < window; posted++)
                    if ((s = vkv_group_post_write(group, partner, src, 0, bytes, remote, 0, o.timeout_ms, &ops[posted])) != VKV_OK) {
                        ok = !say_error("vkv_group_post_write", s);
                        break;
                    }
                for (int k = 0; k < posted; k++)
                    if ((s = vkv_group_wait(group, ops[k], o.timeout_ms)) != VKV_OK && ok) ok = !say_error("vkv_group_wait", s);
            }
            elapsed = now() - t0;
        }
        MPI_Barrier(MPI_COMM_WORLD);
        if (o.bw && measuring && !initiator)
            for (uint64_t k = 0; ok && k < bytes; k++)
                if (inbox_bytes[k] != pattern(partner, k)) {
                    fprintf(stderr, PROG " rank %d: byte %llu of %llu written is wrong\n", rank, (unsigned long long)k, (unsigned long long)bytes);
                    ok = 0;
                }
        /* latency: mean over the measuring pairs (their even ranks); bw: the sum. */
        double value = 0;
        if (initiator) value = o.bw ? (double)bytes * window * iterations / elapsed / 1e6 : elapsed * 1e6 / (2.0 * iterations);
        double total = 0;
        MPI_Reduce(&value, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        int pairs = o.all_pairs ? size / 2 : 1;
        if (!everyone(ok)) failed = 1;
        else if (rank == 0) {
            printf("%-10llu %12.2f\n", (unsigned long long)bytes, o.bw ? total : total / pairs);
            fflush(stdout);
        }
    }

out:
    if (group) vkv_group_close(group);
    if (src) vkv_memory_close(src);
    if (inbox) vkv_memory_close(inbox);
    if (dev) vkv_device_close(dev);
    free(src_bytes);
    free(inbox_bytes);
    int any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) printf(PROG ": %s %s (%d rank(s))\n", o.bw ? "bw" : "latency", any_failed ? "FAILED" : "PASSED", size);
    MPI_Finalize();
    return any_failed ? 1 : 0;
}
