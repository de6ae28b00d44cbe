/*
 * Examples/c/transfer.c: a C program on libvkverbs. Each side creates its own Vulkan device,
 * allocates RDMA-capable Vulkan memory through the library and connects to the peer:
 *
 *   server: listens, accepts with its target memory's descriptor in the private data,
 *           waits for the client's write-with-immediate, verifies every byte of the pattern
 *           in its Vulkan memory, sends its verdict, waits for the client's verdict.
 *   client: connects, writes the pattern from its Vulkan memory into the server's
 *           (write-with-imm), reads it back with an RDMA read into a second Vulkan
 *           allocation and compares, receives the server's verdict, sends its own.
 *
 * Both exit 0 only if every check passed on both sides. The C++ example (Examples/cpp)
 * speaks the same protocol, so either can be the server.
 *
 * Usage: transfer --server [--bind ADDR] [--port N] [--size BYTES] [--strategy NAME] [--device NAME]
 *        transfer --client HOST [--port N] [--size BYTES] [--strategy NAME] [--device NAME]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vkverbs.h>
#include "vk_setup.h"

#define PROG "transfer(c)"
#define MAGIC "VKVX"
#define WRITE_IMM 0x5EED0001u
#define STEP_TIMEOUT_MS 60000

static int report(const char *what, vkv_status s) {
    fprintf(stderr, PROG ": %s: %s: %s\n", what, vkv_status_string(s), vkv_last_error_message());
    return 1;
}
#define CHECK(call)                                  \
    do {                                             \
        vkv_status s_ = (call);                      \
        if (s_ != VKV_OK) { failed = report(#call, s_); goto out; } \
    } while (0)

static uint8_t pattern(uint64_t i) { return (uint8_t)(i * 131u + 7u + (i >> 9)); }

static uint64_t mismatches(const uint8_t *p, uint64_t n, uint64_t *first) {
    uint64_t bad = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] != pattern(i)) {
            if (bad == 0) *first = i;
            bad++;
        }
    }
    return bad;
}

static vkv_memory_strategy parse_strategy(const char *s) {
    if (!strcmp(s, "auto")) return VKV_STRATEGY_AUTO;
    if (!strcmp(s, "rdma-address")) return VKV_STRATEGY_RDMA_ADDRESS;
    if (!strcmp(s, "dma-buf")) return VKV_STRATEGY_DMA_BUF;
    if (!strcmp(s, "host-import")) return VKV_STRATEGY_HOST_POINTER_IMPORT;
    if (!strcmp(s, "host-visible")) return VKV_STRATEGY_HOST_VISIBLE;
    if (!strcmp(s, "staged")) return VKV_STRATEGY_STAGED;
    fprintf(stderr, PROG ": unknown strategy %s\n", s);
    exit(2);
}

static const char *strategy_name(vkv_memory_strategy s) {
    static const char *names[] = {"auto", "rdma-address", "dma-buf", "host-import", "host-visible", "staged", "host"};
    return (unsigned)s < 7 ? names[s] : "?";
}

int main(int argc, char **argv) {
    int server = -1, failed = 0;
    const char *peer = NULL, *bind = NULL, *rdma_name = NULL;
    uint16_t port = 18600;
    uint64_t size = 1 << 20;
    vkv_memory_strategy strategy = VKV_STRATEGY_AUTO;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--server")) server = 1;
        else if (!strcmp(argv[i], "--client") && i + 1 < argc) { server = 0; peer = argv[++i]; }
        else if (!strcmp(argv[i], "--bind") && i + 1 < argc) bind = argv[++i];
        else if (!strcmp(argv[i], "--port") && i + 1 < argc) port = (uint16_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--strategy") && i + 1 < argc) strategy = parse_strategy(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) rdma_name = argv[++i];
        else { server = -1; break; }
    }
    if (server < 0) {
        fprintf(stderr, "usage: %s --server [--bind ADDR] | --client HOST  [--port N] [--size BYTES] "
                        "[--strategy auto|rdma-address|dma-buf|host-import|host-visible|staged] [--device NAME]\n",
                argv[0]);
        return 2;
    }
    const char *role = server ? "server" : "client";

    struct vk_setup vk;
    if (vk_setup_create(&vk, PROG) != 0) return 1;
    vkv_device *dev = NULL;
    vkv_vulkan *vkv = NULL;
    vkv_memory *data = NULL, *check = NULL, *ctrl = NULL;
    vkv_listener *listener = NULL;
    vkv_connection *conn = NULL;
    uint8_t *ctrl_bytes = NULL;
    char name[64];
    vkv_memory_strategy used;
    void *host = NULL;
    vkv_completion done;
    uint64_t op, first = 0, bad;

    CHECK(vkv_device_open(rdma_name, &dev));
    CHECK(vkv_device_name(dev, name, sizeof name));
    CHECK(vk_setup_open(&vk, &vkv));
    /* server: the target peers write into and read from; client: the source of the pattern. */
    CHECK(vkv_memory_allocate(dev, vkv, size, strategy, VKV_ACCESS_LOCAL_WRITE | VKV_ACCESS_REMOTE, &data));
    CHECK(vkv_memory_get_strategy(data, &used));
    CHECK(vkv_memory_host_pointer(data, &host));
    printf(PROG " %s: RDMA device %s, Vulkan device %s, %llu bytes, strategy %s, %u extension(s) from the library\n",
           role, name, vk.device_name, (unsigned long long)size, strategy_name(used), vk.extension_count);
    fflush(stdout);

    /* A small control buffer of the application's own memory: verdicts go through send/recv. */
    if (posix_memalign((void **)&ctrl_bytes, 4096, 4096) != 0) { fprintf(stderr, PROG ": out of memory\n"); failed = 1; goto out; }
    memset(ctrl_bytes, 0, 4096);
    CHECK(vkv_memory_register_host(dev, ctrl_bytes, 4096, VKV_ACCESS_LOCAL_WRITE, &ctrl));

    if (server) {
        uint8_t hello[4 + 8 + VKV_REMOTE_DESCRIPTOR_SIZE];
        memcpy(hello, MAGIC, 4);
        for (int i = 0; i < 8; i++) hello[4 + i] = (uint8_t)(size >> (56 - 8 * i));
        CHECK(vkv_memory_remote_descriptor(data, hello + 12));
        CHECK(vkv_listen(dev, bind, port, &listener));
        printf(PROG " server: listening on %s:%u\n", bind ? bind : "*", port);
        fflush(stdout);
        CHECK(vkv_accept(listener, hello, sizeof hello, STEP_TIMEOUT_MS, &conn));
        uint64_t imm_op, verdict_op, send_op;
        CHECK(vkv_post_recv(conn, NULL, 0, 0, &imm_op));
        CHECK(vkv_post_recv(conn, ctrl, 2048, 64, &verdict_op));
        CHECK(vkv_wait(conn, imm_op, STEP_TIMEOUT_MS, &done));
        if (!done.has_imm || done.imm != WRITE_IMM) {
            fprintf(stderr, PROG " server: expected write-with-imm 0x%x, got has_imm %u imm 0x%x\n", WRITE_IMM,
                    done.has_imm, done.imm);
            failed = 1;
        }
        bad = mismatches((const uint8_t *)host, size, &first);
        if (bad) {
            fprintf(stderr, PROG " server: FAIL: %llu of %llu bytes differ, first at offset %llu\n",
                    (unsigned long long)bad, (unsigned long long)size, (unsigned long long)first);
            failed = 1;
        } else {
            printf(PROG " server: ok: the client's write of %llu bytes verified byte by byte (imm 0x%x)\n",
                   (unsigned long long)size, done.imm);
        }
        memcpy(ctrl_bytes, failed ? "FAIL" : "PASS", 4);
        CHECK(vkv_post_send(conn, ctrl, 0, 4, &send_op));
        CHECK(vkv_wait(conn, send_op, STEP_TIMEOUT_MS, NULL));
        CHECK(vkv_wait(conn, verdict_op, STEP_TIMEOUT_MS, &done));
        if (done.byte_count != 4 || memcmp(ctrl_bytes + 2048, "PASS", 4) != 0) {
            fprintf(stderr, PROG " server: the client reports failure (%.4s)\n", (const char *)ctrl_bytes + 2048);
            failed = 1;
        } else {
            printf(PROG " server: the client verified its read-back\n");
        }
    } else {
        uint8_t hello[VKV_ACCEPT_PRIVATE_DATA_MAX];
        size_t hello_len = 0;
        for (uint64_t i = 0; i < size; i++) ((uint8_t *)host)[i] = pattern(i);
        CHECK(vkv_memory_allocate(dev, vkv, size, strategy, VKV_ACCESS_LOCAL_WRITE, &check));
        void *check_host = NULL;
        CHECK(vkv_memory_host_pointer(check, &check_host));
        /* The server may not be listening yet: retry a refused connection (for about 3 minutes). */
        vkv_status s = VKV_ERR_CONNECTION;
        for (int attempt = 0; attempt < 600 && s == VKV_ERR_CONNECTION; attempt++) {
            s = vkv_connect(dev, peer, port, NULL, 0, 10000, &conn);
            if (s == VKV_ERR_CONNECTION) {
                struct timespec pause = {0, 250 * 1000 * 1000};
                nanosleep(&pause, NULL);
            }
        }
        CHECK(s);
        CHECK(vkv_connection_peer_data(conn, hello, sizeof hello, &hello_len));
        uint64_t server_size = 0;
        for (int i = 0; i < 8; i++) server_size = (server_size << 8) | hello[4 + i];
        if (hello_len < 12 + VKV_REMOTE_DESCRIPTOR_SIZE || memcmp(hello, MAGIC, 4) != 0 || server_size != size) {
            fprintf(stderr, PROG " client: the server's private data is not ours or its size differs (%llu)\n",
                    (unsigned long long)server_size);
            failed = 1;
            goto out;
        }
        const uint8_t *remote = hello + 12;
        uint64_t verdict_op, send_op;
        CHECK(vkv_post_recv(conn, ctrl, 2048, 64, &verdict_op));
        CHECK(vkv_post_write_imm(conn, data, 0, size, remote, 0, WRITE_IMM, &op));
        CHECK(vkv_wait(conn, op, STEP_TIMEOUT_MS, &done));
        printf(PROG " client: wrote %llu bytes with imm 0x%x\n", (unsigned long long)size, WRITE_IMM);
        CHECK(vkv_post_read(conn, check, 0, size, remote, 0, &op));
        CHECK(vkv_wait(conn, op, STEP_TIMEOUT_MS, &done));
        bad = mismatches((const uint8_t *)check_host, size, &first);
        if (bad) {
            fprintf(stderr, PROG " client: FAIL: read-back: %llu of %llu bytes differ, first at %llu\n",
                    (unsigned long long)bad, (unsigned long long)size, (unsigned long long)first);
            failed = 1;
        } else {
            printf(PROG " client: ok: read %llu bytes back, all match\n", (unsigned long long)size);
        }
        CHECK(vkv_wait(conn, verdict_op, STEP_TIMEOUT_MS, &done));
        if (done.byte_count != 4 || memcmp(ctrl_bytes + 2048, "PASS", 4) != 0) {
            fprintf(stderr, PROG " client: the server reports failure (%.4s)\n", (const char *)ctrl_bytes + 2048);
            failed = 1;
        } else {
            printf(PROG " client: the server verified the write\n");
        }
        memcpy(ctrl_bytes, failed ? "FAIL" : "PASS", 4);
        CHECK(vkv_post_send(conn, ctrl, 0, 4, &send_op));
        CHECK(vkv_wait(conn, send_op, STEP_TIMEOUT_MS, NULL));
    }

out:
    /* Close everything (any order works for the library; memory before the VkDevice). */
    if (conn) vkv_connection_close(conn);
    if (listener) vkv_listener_close(listener);
    if (check) vkv_memory_close(check);
    if (data) vkv_memory_close(data);
    if (ctrl) vkv_memory_close(ctrl);
    if (vkv) vkv_vulkan_close(vkv);
    if (dev) vkv_device_close(dev);
    free(ctrl_bytes);
    vk_setup_destroy(&vk);
    if (vkv_live_handle_count() != 0) {
        fprintf(stderr, PROG ": %zu handle(s) still open\n", vkv_live_handle_count());
        failed = 1;
    }
    printf(PROG " %s: %s\n", role, failed ? "FAILED" : "passed");
    return failed ? 1 : 0;
}
