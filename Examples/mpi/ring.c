/*
 * Examples/mpi/ring.c: an MPI program on libvkverbs's groups. Every rank makes its own Vulkan
 * device, allocates two Vulkan buffers through the library (the source it sends, the inbox it
 * exposes), and forms a vkv_group whose allgather is MPI_Allgather; the record each rank
 * publishes carries its inbox's remote descriptor. Then each rank RDMA-writes its source into
 * its right neighbour's inbox (rank r -> r + 1 mod size), and every rank verifies what its
 * left neighbour wrote.
 *
 * Verification is on the host, by the bytes of the inbox as the host sees them: the mapping
 * (host-visible, host-pointer import) or, for staged memory, the staging buffer after a GPU
 * round trip: the received bytes are copied into the device-local VkBuffer and back with
 * vkCmdCopyBuffer (the staging buffer zeroed in between), so what is checked went through
 * device memory. The source is prepared the same way (written through the staging buffer,
 * copied up to the device buffer and back before the write). Strategies without a host
 * mapping (RDMA address, dma-buf) have no host pointer in the C API: this program reports
 * that and fails the strategy rather than skip its check (lavapipe offers neither with rxe,
 * so they are skipped as not offered there).
 *
 * Each strategy asked for runs in turn; a strategy that one rank cannot allocate
 * (VKV_ERR_UNSUPPORTED) is skipped on every rank (they agree with MPI_Allreduce).
 *
 * Failure: a rank whose write fails (the neighbour died: VKV_ERR_DISCONNECTED or
 * VKV_ERR_TIMEOUT, within --timeout-ms) prints the typed error and calls MPI_Abort, which
 * ends the job; no rank hangs in a transfer. --die RANK makes RANK leave after the group has
 * formed (--die-how close: it closes its group and skips the ring, so the job can check
 * its left neighbour's error and finish; --die-how exit: _exit(3) without MPI_Finalize).
 *
 * Usage: ring [--device NAME] [--address ADDR] [--size BYTES] [--strategy NAME|all]
 *             [--timeout-ms N] [--die RANK [--die-how close|exit]] [--expect-failure]
 *        --device / --address default to $VKVERBS_RDMA_DEVICE / $VKVERBS_FABRIC_ADDR.
 * Exit status 0 only when every rank verified every strategy that ran (and at least one ran);
 * with --die ... close, 0 only when the dying rank's left neighbour saw a typed error.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vkverbs.h>
#include "vk_setup.h"

#define PROG "ring(mpi)"

static int rank = 0, size = 1;

static uint8_t pattern(int owner, int strategy, uint64_t i) {
    return (uint8_t)(i * 131u + 7u + (i >> 9) + (uint64_t)owner * 37u + (uint64_t)strategy * 11u);
}

static const char *strategy_name(int s) {
    static const char *names[] = {"auto", "rdma-address", "dma-buf", "host-import", "host-visible", "staged", "host"};
    return (unsigned)s < 7 ? names[s] : "?";
}

static int parse_strategy(const char *s) {
    for (int i = 0; i <= VKV_STRATEGY_STAGED; i++)
        if (!strcmp(s, strategy_name(i))) return i;
    return -1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The group's allgather: one line of MPI. */
static int gather(const void *mine, void *all, size_t n, void *comm) {
    if (n > (size_t)0x7fffffff) return -1;
    return MPI_Allgather(mine, (int)n, MPI_BYTE, all, (int)n, MPI_BYTE, *(MPI_Comm *)comm);
}

static int say_error(const char *what, vkv_status s) {
    fprintf(stderr, PROG " rank %d: %s: %s: %s\n", rank, what, vkv_status_string(s), vkv_last_error_message());
    return 1;
}

/* ---- The application's own GPU work: one command buffer, one fence. ---------------- */

struct gpu {
    struct vk_setup *vk;
    VkQueue queue;
    VkCommandPool pool;
    VkCommandBuffer cmd;
    VkFence fence;
};

static int gpu_open(struct gpu *g, struct vk_setup *vk) {
    memset(g, 0, sizeof *g);
    g->vk = vk;
    vkGetDeviceQueue(vk->device, vk->queue_family, 0, &g->queue);
    VkCommandPoolCreateInfo pci = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, NULL,
                                   VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, vk->queue_family};
    if (vkCreateCommandPool(vk->device, &pci, NULL, &g->pool) != VK_SUCCESS) return 1;
    VkCommandBufferAllocateInfo cai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, NULL, g->pool,
                                       VK_COMMAND_BUFFER_LEVEL_PRIMARY, 1};
    if (vkAllocateCommandBuffers(vk->device, &cai, &g->cmd) != VK_SUCCESS) return 1;
    VkFenceCreateInfo fci = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO, NULL, 0};
    if (vkCreateFence(vk->device, &fci, NULL, &g->fence) != VK_SUCCESS) return 1;
    return 0;
}

static void gpu_close(struct gpu *g) {
    if (!g->vk) return;
    if (g->fence) vkDestroyFence(g->vk->device, g->fence, NULL);
    if (g->pool) vkDestroyCommandPool(g->vk->device, g->pool, NULL); /* frees g->cmd */
    memset(g, 0, sizeof *g);
}

static int gpu_begin(struct gpu *g) {
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, NULL,
                                   VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT, NULL};
    vkResetCommandBuffer(g->cmd, 0);
    return vkBeginCommandBuffer(g->cmd, &bi) != VK_SUCCESS;
}

/* Ends, submits and waits (60 s at most). */
static int gpu_submit(struct gpu *g) {
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, VK_ACCESS_TRANSFER_WRITE_BIT,
                          VK_ACCESS_HOST_READ_BIT};
    vkCmdPipelineBarrier(g->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0,
                         NULL);
    if (vkEndCommandBuffer(g->cmd) != VK_SUCCESS) return 1;
    VkSubmitInfo si;
    memset(&si, 0, sizeof si);
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &g->cmd;
    if (vkResetFences(g->vk->device, 1, &g->fence) != VK_SUCCESS) return 1;
    if (vkQueueSubmit(g->queue, 1, &si, g->fence) != VK_SUCCESS) return 1;
    return vkWaitForFences(g->vk->device, 1, &g->fence, VK_TRUE, 60ull * 1000 * 1000 * 1000) != VK_SUCCESS;
}

static void transfer_barrier(struct gpu *g) {
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER, NULL, VK_ACCESS_TRANSFER_WRITE_BIT,
                          VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT};
    vkCmdPipelineBarrier(g->cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, NULL,
                         0, NULL);
}

/* Staged memory: copies staging -> device-local, zeroes staging, copies device-local -> staging.
 * Afterwards the staging bytes are the device buffer's. */
static int staged_round_trip(struct gpu *g, vkv_memory *m, uint64_t n) {
    VkBuffer device_buffer = VK_NULL_HANDLE, staging = VK_NULL_HANDLE;
    vkv_status s = vkv_memory_vk_buffer(m, &device_buffer, &staging);
    if (s != VKV_OK) return say_error("vkv_memory_vk_buffer", s);
    if (!device_buffer || !staging) {
        fprintf(stderr, PROG " rank %d: staged memory without a device or staging buffer\n", rank);
        return 1;
    }
    VkBufferCopy whole = {0, 0, n};
    if (gpu_begin(g)) return 1;
    vkCmdCopyBuffer(g->cmd, staging, device_buffer, 1, &whole);
    transfer_barrier(g);
    vkCmdFillBuffer(g->cmd, staging, 0, VK_WHOLE_SIZE, 0);
    transfer_barrier(g);
    vkCmdCopyBuffer(g->cmd, device_buffer, staging, 1, &whole);
    return gpu_submit(g);
}

/* ---- One strategy --------------------------------------------------------------- */

enum outcome { RAN_OK = 0, RAN_FAILED = 1, NOT_OFFERED = 2 };

struct options {
    const char *device_name, *address;
    uint64_t bytes;
    int32_t timeout_ms;
    int die_rank;
    int die_exit;
};

static void fill(uint8_t *p, int owner, int strategy, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) p[i] = pattern(owner, strategy, i);
}

static uint64_t mismatches(const uint8_t *p, int owner, int strategy, uint64_t n, uint64_t *first) {
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++)
        if (p[i] != pattern(owner, strategy, i)) {
            if (!bad) *first = i;
            bad++;
        }
    return bad;
}

/* 1 when ok is 1 on every rank. Every rank calls it at the same points, so a rank that failed
 * never leaves the others waiting in a different collective. */
static int everyone(int ok) {
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}

/* Runs the ring with memory of one strategy. *write_status receives the status of this rank's
 * write (for the --die checks). */
static enum outcome run_strategy(const struct options *o, vkv_device *dev, vkv_vulkan *vkv, struct gpu *g,
                                 int strategy, vkv_status *write_status) {
    vkv_memory *source = NULL, *inbox = NULL;
    vkv_group *group = NULL;
    enum outcome result = RAN_FAILED;
    int right = (rank + 1) % size, left = (rank + size - 1) % size, ok = 1;
    void *src_host = NULL, *inbox_host = NULL;
    uint8_t descriptor[VKV_REMOTE_DESCRIPTOR_SIZE], remote[VKV_REMOTE_DESCRIPTOR_SIZE];
    double formed = 0, took = 0, t0;
    *write_status = VKV_OK;

    /* 1. Allocate on every rank; agree on whether the strategy is offered everywhere. */
    vkv_status s = vkv_memory_allocate(dev, vkv, o->bytes, (vkv_memory_strategy)strategy,
                                       VKV_ACCESS_LOCAL_WRITE | VKV_ACCESS_REMOTE_READ, &source);
    if (s == VKV_OK)
        s = vkv_memory_allocate(dev, vkv, o->bytes, (vkv_memory_strategy)strategy, VKV_ACCESS_REMOTE, &inbox);
    int mine = s == VKV_OK ? RAN_OK : s == VKV_ERR_UNSUPPORTED ? NOT_OFFERED : RAN_FAILED, worst = 0;
    if (mine == RAN_FAILED) say_error("vkv_memory_allocate", s);
    if (mine == NOT_OFFERED)
        printf(PROG " rank %d: %s: not offered here (%s)\n", rank, strategy_name(strategy), vkv_last_error_message());
    MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (worst != RAN_OK) {
        result = worst == NOT_OFFERED ? NOT_OFFERED : RAN_FAILED;
        if (result == NOT_OFFERED && rank == 0) printf(PROG ": %s: skipped (not offered on every rank)\n", strategy_name(strategy));
        goto out;
    }

    /* 2. Fill the source, clear the inbox, take the inbox's descriptor. */
    s = vkv_memory_host_pointer(source, &src_host);
    if (s == VKV_OK) s = vkv_memory_host_pointer(inbox, &inbox_host);
    if (s != VKV_OK) {
        /* RDMA address / dma-buf memory: no host view through the C API (not on lavapipe). */
        fprintf(stderr, PROG " rank %d: %s memory has no host pointer (%s); this example verifies on the host only\n",
                rank, strategy_name(strategy), vkv_last_error_message());
        ok = 0;
    }
    if (ok) {
        fill((uint8_t *)src_host, rank, strategy, o->bytes);
        memset(inbox_host, 0, o->bytes);
        /* Staged: the source goes up to the device buffer and comes back down before it is sent. */
        if (strategy == VKV_STRATEGY_STAGED && staged_round_trip(g, source, o->bytes)) {
            fprintf(stderr, PROG " rank %d: GPU copy failed\n", rank);
            ok = 0;
        }
    }
    if (ok && (s = vkv_memory_remote_descriptor(inbox, descriptor)) != VKV_OK) ok = !say_error("vkv_memory_remote_descriptor", s);
    if (!everyone(ok)) goto out;

    /* 3. The group: a ring (each rank names its right neighbour; a pair connects when either
     * names the other, so it is connected to its left one too). One MPI_Allgather inside. */
    MPI_Comm comm = MPI_COMM_WORLD;
    int32_t neighbours[1] = {right}, failed_member = -1;
    t0 = now();
    s = vkv_group_create(dev, o->address, rank, size, neighbours, 1, descriptor, sizeof descriptor, gather, &comm,
                         o->timeout_ms, &failed_member, &group);
    formed = now() - t0;
    if (s != VKV_OK) {
        say_error("vkv_group_create", s);
        fprintf(stderr, PROG " rank %d: member to blame: %d\n", rank, failed_member);
        ok = 0;
    }
    size_t got = 0;
    if (ok && (s = vkv_group_descriptor(group, right, remote, sizeof remote, &got)) != VKV_OK) ok = !say_error("vkv_group_descriptor", s);
    if (ok && got != sizeof remote) {
        fprintf(stderr, PROG " rank %d: rank %d published %zu descriptor bytes, not %d\n", rank, right, got,
                VKV_REMOTE_DESCRIPTOR_SIZE);
        ok = 0;
    }
    if (!everyone(ok)) goto out;

    /* 4. --die: one rank leaves now that the group has formed. */
    if (o->die_rank == rank) {
        if (o->die_exit) {
            printf(PROG " rank %d: dying now (_exit without MPI_Finalize)\n", rank);
            fflush(stdout);
            _exit(3);
        }
        printf(PROG " rank %d: leaving the group (vkv_group_close); it does not write\n", rank);
        fflush(stdout);
        vkv_group_close(group);
        group = NULL;
    }
    if (o->die_rank >= 0 && !o->die_exit) MPI_Barrier(MPI_COMM_WORLD); /* the others write after it left */

    /* 5. The ring write. */
    if (group) {
        t0 = now();
        s = vkv_group_write(group, right, source, 0, o->bytes, remote, 0, o->timeout_ms);
        took = now() - t0;
        *write_status = s;
        if (s != VKV_OK) {
            say_error("vkv_group_write", s);
            fprintf(stderr, PROG " rank %d: the write to rank %d failed after %.2f s (timeout %d ms)\n", rank, right,
                    took, o->timeout_ms);
            if (o->die_rank < 0 || o->die_exit) {
                /* The job cannot go on: bring every rank down rather than wait in a collective. */
                fprintf(stderr, PROG " rank %d: MPI_Abort\n", rank);
                fflush(stderr);
                MPI_Abort(MPI_COMM_WORLD, 10 + (int)s);
            }
            ok = 0;
        }
    }
    /* Every rank's write has completed (RC: the bytes are in the target's memory) once all have
     * passed the barrier. */
    MPI_Barrier(MPI_COMM_WORLD);
    if (o->die_rank >= 0) {
        result = RAN_OK; /* run() judges the write statuses */
        goto out;
    }

    /* 6. Verify what the left neighbour wrote. */
    if (ok && strategy == VKV_STRATEGY_STAGED && staged_round_trip(g, inbox, o->bytes)) {
        fprintf(stderr, PROG " rank %d: GPU copy failed\n", rank);
        ok = 0;
    }
    if (ok) {
        uint64_t first = 0, bad = mismatches((const uint8_t *)inbox_host, left, strategy, o->bytes, &first);
        if (bad) {
            fprintf(stderr, PROG " rank %d: %s: FAIL: %llu of %llu bytes from rank %d differ, first at offset %llu\n",
                    rank, strategy_name(strategy), (unsigned long long)bad, (unsigned long long)o->bytes, left,
                    (unsigned long long)first);
            ok = 0;
        } else {
            printf(PROG " rank %d: %s: group of %d formed in %.2f s; wrote %llu bytes to rank %d in %.3f s; the "
                        "bytes from rank %d verified%s\n",
                   rank, strategy_name(strategy), size, formed, (unsigned long long)o->bytes, right, took, left,
                   strategy == VKV_STRATEGY_STAGED ? " after a GPU round trip" : "");
        }
    }
    result = everyone(ok) ? RAN_OK : RAN_FAILED;

out:
    if (group) vkv_group_close(group);
    if (source) vkv_memory_close(source);
    if (inbox) vkv_memory_close(inbox);
    return result;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    struct options o = {getenv("VKVERBS_RDMA_DEVICE"), getenv("VKVERBS_FABRIC_ADDR"), 1 << 20, 60000, -1, 0};
    const char *strategies = "all";
    int usage = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--device") && v) o.device_name = argv[++i];
        else if (!strcmp(a, "--address") && v) o.address = argv[++i];
        else if (!strcmp(a, "--size") && v) o.bytes = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(a, "--strategy") && v) strategies = argv[++i];
        else if (!strcmp(a, "--timeout-ms") && v) o.timeout_ms = (int32_t)atoi(argv[++i]);
        else if (!strcmp(a, "--die") && v) o.die_rank = atoi(argv[++i]);
        else if (!strcmp(a, "--die-how") && v) {
            const char *how = argv[++i];
            if (!strcmp(how, "exit")) o.die_exit = 1;
            else if (strcmp(how, "close")) usage = 1;
        } else usage = 1;
    }
    int only = strcmp(strategies, "all") ? parse_strategy(strategies) : -1;
    if (usage || !o.address || o.bytes == 0 || o.bytes > (1ull << 30) || (strcmp(strategies, "all") && only < 0) ||
        o.die_rank >= size || size < 2) {
        if (rank == 0)
            fprintf(stderr,
                    "usage: %s [--device NAME] [--address ADDR] [--size BYTES (1..1 GiB)] "
                    "[--strategy all|auto|rdma-address|dma-buf|host-import|host-visible|staged] [--timeout-ms N] "
                    "[--die RANK [--die-how close|exit]]\n"
                    "  at least 2 ranks; --address (or VKVERBS_FABRIC_ADDR) is this rank's IP address on the RDMA device\n",
                    argv[0]);
        MPI_Finalize();
        return 2;
    }

    printf(PROG " rank %d of %d: MPI up; making the Vulkan and RDMA devices\n", rank, size);
    fflush(stdout);
    struct vk_setup vk;
    struct gpu g;
    memset(&g, 0, sizeof g);
    vkv_device *dev = NULL;
    vkv_vulkan *vkv = NULL;
    int failed = 0, ran = 0, typed_error_seen = 0;
    int setup = vk_setup_create(&vk, PROG);
    vkv_status s = VKV_OK;
    char name[64] = "?";
    if (!setup && (s = vkv_device_open(o.device_name, &dev)) != VKV_OK) setup = say_error("vkv_device_open", s);
    if (!setup && (s = vkv_device_name(dev, name, sizeof name)) != VKV_OK) setup = say_error("vkv_device_name", s);
    if (!setup && (s = vk_setup_open(&vk, &vkv)) != VKV_OK) setup = say_error("vkv_vulkan_open", s);
    if (!setup && gpu_open(&g, &vk)) setup = 1, fprintf(stderr, PROG " rank %d: command pool or fence failed\n", rank);
    int any_setup = 0;
    MPI_Allreduce(&setup, &any_setup, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any_setup) { failed = 1; goto out; }
    printf(PROG " rank %d of %d: RDMA device %s, address %s, Vulkan device %s\n", rank, size, name, o.address,
           vk.device_name);
    fflush(stdout);

    for (int st = VKV_STRATEGY_RDMA_ADDRESS; st <= VKV_STRATEGY_STAGED; st++) {
        if (only >= 0 && st != only) continue;
        vkv_status write_status = VKV_OK;
        enum outcome r = run_strategy(&o, dev, vkv, &g, st, &write_status);
        fflush(stdout);
        if (r == NOT_OFFERED) continue;
        ran++;
        if (r == RAN_FAILED) failed = 1;
        if (o.die_rank >= 0) {
            /* The dying rank's left neighbour must have seen a typed error. */
            int left_of_dead = (o.die_rank + size - 1) % size;
            if (rank == left_of_dead) {
                typed_error_seen = write_status == VKV_ERR_DISCONNECTED || write_status == VKV_ERR_TIMEOUT;
                printf(PROG " rank %d: the write to the rank that left gave %s: %s\n", rank,
                       vkv_status_string(write_status), typed_error_seen ? "typed error, as expected" : "UNEXPECTED");
            } else if (rank != o.die_rank) {
                typed_error_seen = write_status == VKV_OK;
                if (!typed_error_seen)
                    printf(PROG " rank %d: a write to a live rank failed: %s\n", rank, vkv_status_string(write_status));
            } else {
                typed_error_seen = 1;
            }
            int all_ok = 0;
            MPI_Allreduce(&typed_error_seen, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
            failed = !all_ok;
            break; /* one strategy is enough for the failure check */
        }
    }
    if (ran == 0) {
        if (rank == 0) fprintf(stderr, PROG ": no strategy asked for is offered on every rank\n");
        failed = 1;
    }

out:
    gpu_close(&g);
    if (vkv) vkv_vulkan_close(vkv);
    if (dev) vkv_device_close(dev);
    vk_setup_destroy(&vk);
    int any_failed = 0;
    MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0) printf(PROG ": %s (%d rank(s), %d strateg%s ran)\n", any_failed ? "FAILED" : "PASSED", size, ran,
                          ran == 1 ? "y" : "ies");
    MPI_Finalize();
    return any_failed ? 1 : 0;
}
