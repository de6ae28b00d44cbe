/*
 * Examples/c/frames.c: frame streams through the C API (vkv_frame_receiver, vkv_frame_sender).
 *
 *   frames                 host checks, no RDMA device needed: NULL / garbage / wrong-kind
 *                          handles, bad options (0 slots, too many, slot size 0, unknown policy
 *                          and flags, a zero timeout, a strategy or timeline without Vulkan), bad
 *                          sender arguments; nothing may be left open
 *   frames --rdma ADDR     also streams over the RDMA device holding ADDR (rxe in the fabric):
 *                          block into host memory (1,000 frames of 1 to 4,096 bytes), every
 *                          byte and number checked; drop-oldest and
 *                          latest-wins with exact drop counts; a Vulkan ring (the automatic choice)
 *                          with a timeline semaphore signalled per frame; a frame larger than the
 *                          stream's refused with the stream going on; a sender whose frames do not
 *                          fit the slots refused; a stalled receiver timing a sender's credit wait
 *                          out; a receiver that closes giving the sender an error in time; calls
 *                          after close; no handle left open.
 *   frames --serve ADDR [--port P] [--frames N]
 *                          one stream between two hosts, the receiving end: listens on ADDR, port
 *                          P (default 18613), takes one sender (waiting up to 3 minutes), block
 *                          policy into host memory (16 slots of 4,096 bytes); wants exactly N
 *                          frames (default 2,000) of 1 to 4,096 bytes, numbered 0 .. N-1 in order,
 *                          each once, every byte and length checked, and the statistics to agree.
 *   frames --send PEER [--port P] [--frames N]
 *                          the sending end: connects to PEER (retrying for up to 3 minutes, as the
 *                          receiving host may start later), checks the ring's geometry, sends the N
 *                          frames and waits until the receiver released all of them.
 * Exit 0 when every check passed; the last line is "frames(c): N checks, M failed ...".
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vkverbs.h>
#include "checks.h"
#include "vk_setup.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static vkv_frame_receiver_options options_of(uint32_t slots, uint64_t slot_size, vkv_frame_policy policy) {
    vkv_frame_receiver_options o;
    memset(&o, 0, sizeof o);
    o.slots = slots;
    o.slot_size = slot_size;
    o.policy = (uint32_t)policy;
    o.flags = VKV_FRAME_VERIFY_CHECKSUMS;
    o.timeout_ms = 10000;
    return o;
}

/* ---- Host checks (no RDMA) --------------------------------------------------------- */

static void host_checks(void) {
    vkv_frame_receiver *r = NULL;
    vkv_frame_sender *s = NULL;
    vkv_frame frame;
    vkv_frame_statistics stats;
    vkv_frame_sender_summary summary;
    int32_t state = 7;
    uint64_t u64 = 1;
    uint32_t u32 = 1;
    void *ptr = NULL;
    vkv_memory_strategy strategy;
    VkBuffer buffer;
    uint8_t bytes[64] = {0};

    TRUE(sizeof(vkv_frame_receiver_options) == 32);
    TRUE(sizeof(vkv_frame) == 56);
    TRUE(sizeof(vkv_frame_statistics) == 96);
    TRUE(sizeof(vkv_frame_sender_summary) == 32);
    TRUE(vkv_version() == VKV_VERSION && VKV_VERSION_MINOR >= 2);
    TRUE(strcmp(vkv_status_string(VKV_ERR_PROTOCOL), "VKV_ERR_PROTOCOL") == 0);
    TRUE(strcmp(vkv_status_string(VKV_ERR_CORRUPTED), "VKV_ERR_CORRUPTED") == 0);
    TRUE(vkv_live_handle_count() == 0);

    /* NULL handles. */
    vkv_frame_receiver_options good = options_of(8, 4096, VKV_FRAME_POLICY_BLOCK);
    EXPECT(vkv_frame_receiver_accept, (NULL, &good, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_HANDLE);
    TRUE(r == NULL);
    EXPECT(vkv_frame_receiver_ring, (NULL, &strategy, &ptr, &buffer, NULL), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_receiver_next, (NULL, 0, &frame, &state), VKV_ERR_INVALID_HANDLE);
    TRUE(state == VKV_FRAME_NONE);
    EXPECT(vkv_frame_receiver_release, (NULL, 0), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_receiver_statistics, (NULL, &stats), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_receiver_latency_percentile, (NULL, 0.5, &u64), VKV_ERR_INVALID_HANDLE);
    TRUE(u64 == 0);
    EXPECT(vkv_frame_receiver_close, (NULL), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_sender_geometry, (NULL, &u32, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_sender_wait_credit, (NULL, 0), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_sender_send, (NULL, bytes, sizeof bytes, &u64), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_sender_finish, (NULL, &summary), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_sender_close, (NULL), VKV_ERR_INVALID_HANDLE);

    /* Garbage handles. */
    EXPECT(vkv_frame_receiver_release, ((vkv_frame_receiver *)(void *)bytes, 0), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_sender_close, ((vkv_frame_sender *)(uintptr_t)0x1238), VKV_ERR_INVALID_HANDLE);
    EXPECT(vkv_frame_receiver_close, ((vkv_frame_receiver *)(uintptr_t)UINTPTR_MAX), VKV_ERR_INVALID_HANDLE);

    /* NULL out-parameters. */
    EXPECT(vkv_frame_receiver_accept, (NULL, &good, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, NULL), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_receiver_next, (NULL, 0, NULL, &state), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_receiver_next, (NULL, 0, &frame, NULL), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_receiver_statistics, (NULL, NULL), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_receiver_latency_percentile, (NULL, 0.5, NULL), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_sender_connect, ("127.0.0.1", 1, 4096, 8, 0, 100, NULL), VKV_ERR_INVALID_ARGUMENT);

    /* Options, checked before the listener: 0 slots and every other bad field. */
    vkv_frame_receiver_options bad;
    bad = good; bad.slots = 0;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    bad = good; bad.slots = VKV_FRAME_MAX_SLOTS + 1;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    bad = good; bad.slot_size = 0;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    bad = good; bad.slot_size = (uint64_t)VKV_FRAME_MAX_SIZE + 1;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    bad = good; bad.policy = 3;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    bad = good; bad.ready_limit = 9;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    bad = good; bad.credit_batch = 9;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    bad = good; bad.flags = 0x10;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    bad = good; bad.timeout_ms = 0;
    EXPECT(vkv_frame_receiver_accept, (NULL, &bad, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_receiver_accept, (NULL, NULL, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    /* A Vulkan strategy or a timeline without a vkv_vulkan. */
    EXPECT(vkv_frame_receiver_accept, (NULL, &good, NULL, VKV_STRATEGY_AUTO, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_receiver_accept, (NULL, &good, NULL, VKV_STRATEGY_HOST, (VkSemaphore)(uintptr_t)0x40, 10, &r),
           VKV_ERR_INVALID_ARGUMENT);
    TRUE(r == NULL);
    EXPECT(vkv_frame_receiver_accept, (NULL, &good, (vkv_vulkan *)(uintptr_t)0x1232, VKV_STRATEGY_AUTO, VK_NULL_HANDLE, 10, &r),
           VKV_ERR_INVALID_HANDLE);

    /* With real Vulkan objects (lavapipe): an unknown strategy, then a valid one with no listener. */
    struct vk_setup vk;
    vkv_vulkan *vkv = NULL;
    if (vk_setup_create(&vk, "frames") == 0) {
        EXPECT(vk_setup_open, (&vk, &vkv), VKV_OK);
        EXPECT(vkv_frame_receiver_accept, (NULL, &good, vkv, (vkv_memory_strategy)9, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_frame_receiver_accept, (NULL, &good, vkv, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_frame_receiver_accept, (NULL, &good, vkv, VKV_STRATEGY_AUTO, VK_NULL_HANDLE, 10, &r), VKV_ERR_INVALID_HANDLE);
        /* A handle of another kind where a listener belongs. */
        EXPECT(vkv_frame_receiver_accept, ((vkv_listener *)(void *)vkv, &good, vkv, VKV_STRATEGY_AUTO, VK_NULL_HANDLE, 10, &r),
               VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_frame_receiver_close, ((vkv_frame_receiver *)(void *)vkv), VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_frame_sender_close, ((vkv_frame_sender *)(void *)vkv), VKV_ERR_INVALID_HANDLE);
        TRUE(r == NULL);
        EXPECT(vkv_vulkan_close, (vkv), VKV_OK);
        vk_setup_destroy(&vk);
    } else {
        printf("skipped: the Vulkan checks (no Vulkan device)\n");
    }

    /* Sender arguments, checked before anything is resolved or sent. */
    EXPECT(vkv_frame_sender_connect, (NULL, 18700, 4096, 8, 0, 100, &s), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_sender_connect, ("127.0.0.1", 0, 4096, 8, 0, 100, &s), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_sender_connect, ("127.0.0.1", 18700, 0, 8, 0, 100, &s), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_sender_connect, ("127.0.0.1", 18700, (uint64_t)VKV_FRAME_MAX_SIZE + 1, 8, 0, 100, &s), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_sender_connect, ("127.0.0.1", 18700, 4096, 0, 0, 100, &s), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_sender_connect, ("127.0.0.1", 18700, 4096, VKV_FRAME_MAX_SLOTS + 1, 0, 100, &s), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_sender_connect, ("127.0.0.1", 18700, 4096, 8, 0x8, 100, &s), VKV_ERR_INVALID_ARGUMENT);
    EXPECT(vkv_frame_sender_connect, ("127.0.0.1", 18700, 4096, 8, 0, 0, &s), VKV_ERR_INVALID_ARGUMENT);
    TRUE(s == NULL);
    TRUE(vkv_live_handle_count() == 0);
}

/* ---- RDMA checks ------------------------------------------------------------------- */

struct accept_args {
    vkv_listener *listener;
    vkv_frame_receiver_options options;
    vkv_vulkan *vulkan;
    vkv_memory_strategy strategy;
    VkSemaphore timeline;
    int32_t wait_ms;
    vkv_status status;
    vkv_frame_receiver *receiver;
    char message[512];
};

static void *accept_thread(void *p) {
    struct accept_args *a = p;
    a->status = vkv_frame_receiver_accept(a->listener, &a->options, a->vulkan, a->strategy, a->timeline, a->wait_ms, &a->receiver);
    if (a->status != VKV_OK) snprintf(a->message, sizeof a->message, "%s", vkv_last_error_message());
    return NULL;
}

/* Frame f's byte i. */
static uint8_t pattern(uint64_t f, uint64_t i) { return (uint8_t)(f * 31u + i * 7u + (i >> 8)); }

/* Length of frame f in a stream of frames up to max bytes: sizes spread over 1 .. max (the first
 * frame is max bytes, a whole slot). */
static uint64_t length_of(uint64_t f, uint64_t max) { return (f * 1237 + max - 1) % max + 1; }

struct send_args {
    vkv_frame_sender *sender;
    uint64_t frames, max;
    vkv_status status;
    vkv_frame_sender_summary summary;
    char message[512];
};

static void *send_thread(void *p) {
    struct send_args *a = p;
    uint8_t *buf = malloc(a->max);
    a->status = VKV_OK;
    for (uint64_t f = 0; f < a->frames && a->status == VKV_OK; f++) {
        uint64_t n = length_of(f, a->max), number = 0;
        for (uint64_t i = 0; i < n; i++) buf[i] = pattern(f, i);
        a->status = vkv_frame_sender_send(a->sender, buf, n, &number);
        if (a->status == VKV_OK && number != f) {
            a->status = VKV_ERR_INTERNAL;
            snprintf(a->message, sizeof a->message, "frame %llu came back as number %llu", (unsigned long long)f,
                     (unsigned long long)number);
            break;
        }
    }
    if (a->status == VKV_OK) a->status = vkv_frame_sender_finish(a->sender, &a->summary);
    if (a->status != VKV_OK && !a->message[0]) snprintf(a->message, sizeof a->message, "%s", vkv_last_error_message());
    free(buf);
    return NULL;
}

/* Connects a receiver (accepted on a thread) and a sender; 0 on success. */
static int pair(vkv_listener *listener, const char *addr, uint16_t port, struct accept_args *a, uint64_t frame_size,
                vkv_frame_receiver **r, vkv_frame_sender **s) {
    pthread_t t;
    a->listener = listener;
    a->wait_ms = 60000;
    a->receiver = NULL;
    pthread_create(&t, NULL, accept_thread, a);
    vkv_status st = vkv_frame_sender_connect(addr, port, frame_size, 64, 0, 10000, s);
    if (st != VKV_OK) printf("  connect: %s: %s\n", vkv_status_string(st), vkv_last_error_message());
    pthread_join(t, NULL);
    if (a->status != VKV_OK) printf("  accept: %s: %s\n", vkv_status_string(a->status), a->message);
    *r = a->receiver;
    TRUE(st == VKV_OK && a->status == VKV_OK);
    if (st != VKV_OK || a->status != VKV_OK) {
        if (*s) vkv_frame_sender_close(*s);
        if (*r) vkv_frame_receiver_close(*r);
        *s = NULL;
        *r = NULL;
        return 1;
    }
    return 0;
}

/* Consumes a whole stream sent by send_thread; checks order, bytes and what the policy dropped. */
static void consume(vkv_frame_receiver *r, vkv_frame_sender *s, uint64_t frames, uint64_t max, vkv_frame_policy policy,
                    int consume_us, const char *name) {
    pthread_t t;
    struct send_args sa;
    memset(&sa, 0, sizeof sa);
    sa.sender = s;
    sa.frames = frames;
    sa.max = max;
    pthread_create(&t, NULL, send_thread, &sa);
    uint64_t got = 0, missing = 0, bad_bytes = 0, bad_order = 0, next_expected = 0;
    int32_t state = VKV_FRAME_NONE;
    vkv_frame frame;
    vkv_status st;
    for (;;) {
        st = vkv_frame_receiver_next(r, 10000, &frame, &state);
        if (st != VKV_OK || state != VKV_FRAME_READY) break;
        if (frame.number < next_expected) bad_order++;
        else missing += frame.number - next_expected;
        next_expected = frame.number + 1;
        uint64_t want = length_of(frame.number, max);
        if (frame.length != want || !frame.data || !frame.has_checksum) {
            bad_bytes++;
        } else {
            const uint8_t *p = frame.data;
            for (uint64_t i = 0; i < frame.length; i++)
                if (p[i] != pattern(frame.number, i)) { bad_bytes++; break; }
        }
        got++;
        if (consume_us) sleep_ms(consume_us / 1000);
        if (vkv_frame_receiver_release(r, frame.number) != VKV_OK) { bad_order++; break; }
    }
    if (st != VKV_OK) printf("  %s: next: %s: %s\n", name, vkv_status_string(st), vkv_last_error_message());
    pthread_join(t, NULL);
    if (sa.status != VKV_OK) printf("  %s: sender: %s: %s\n", name, vkv_status_string(sa.status), sa.message);
    missing += frames - next_expected;
    vkv_frame_statistics stats;
    EXPECT(vkv_frame_receiver_statistics, (r, &stats), VKV_OK);
    printf("  %s: %llu frames sent, %llu delivered, %llu dropped (%llu missing by number), %llu credit writes, "
           "%llu credit waits; latency us p50 %.1f p99 %.1f p99.9 %.1f max %.1f\n",
           name, (unsigned long long)sa.summary.frames, (unsigned long long)got, (unsigned long long)stats.dropped,
           (unsigned long long)missing, (unsigned long long)stats.credit_writes, (unsigned long long)sa.summary.credit_waits,
           stats.latency_p50_ns / 1e3, stats.latency_p99_ns / 1e3, stats.latency_p999_ns / 1e3, stats.latency_max_ns / 1e3);
    TRUE(st == VKV_OK && state == VKV_FRAME_ENDED);
    TRUE(sa.status == VKV_OK && sa.summary.frames == frames);
    TRUE(bad_bytes == 0 && bad_order == 0);
    TRUE(stats.arrived == frames && stats.delivered == got && stats.released == got);
    TRUE(stats.dropped == missing && got + stats.dropped == frames);
    if (policy == VKV_FRAME_POLICY_BLOCK) TRUE(stats.dropped == 0);
    TRUE(stats.latency_count == got && stats.latency_p50_ns <= stats.latency_p99_ns &&
         stats.latency_p99_ns <= stats.latency_p999_ns && stats.latency_p999_ns <= stats.latency_max_ns);
    uint64_t p100 = 0;
    EXPECT(vkv_frame_receiver_latency_percentile, (r, 1.0, &p100), VKV_OK);
    TRUE(p100 == stats.latency_max_ns);
    EXPECT(vkv_frame_receiver_latency_percentile, (r, 1.5, &p100), VKV_ERR_INVALID_ARGUMENT);
}

static void rdma_checks(const char *addr) {
    vkv_device *dev = NULL;
    vkv_listener *listener = NULL;
    vkv_frame_receiver *r = NULL;
    vkv_frame_sender *s = NULL;
    uint16_t port = 0;
    struct accept_args a;
    vkv_frame frame;
    int32_t state;
    uint64_t number = 0;
    uint8_t data[8192];
    memset(data, 0x5a, sizeof data);

    EXPECT(vkv_device_open, (NULL, &dev), VKV_OK);
    EXPECT(vkv_listen, (dev, addr, 0, &listener), VKV_OK);
    EXPECT(vkv_listener_port, (listener, &port), VKV_OK);
    if (!dev || !listener) return;

    /* Nothing listens there; no sender comes. */
    EXPECT(vkv_frame_sender_connect, (addr, 1, 4096, 8, 0, 5000, &s), VKV_ERR_CONNECTION);
    vkv_frame_receiver_options o = options_of(8, 4096, VKV_FRAME_POLICY_BLOCK);
    EXPECT(vkv_frame_receiver_accept, (listener, &o, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, 300, &r), VKV_ERR_TIMEOUT);
    TRUE(r == NULL && s == NULL);

    /* Block into host memory: every frame once, in order, every byte checked. */
    memset(&a, 0, sizeof a);
    a.options = options_of(8, 4096, VKV_FRAME_POLICY_BLOCK);
    a.options.credit_batch = 2;
    a.strategy = VKV_STRATEGY_HOST;
    if (pair(listener, addr, port, &a, 4096, &r, &s) == 0) {
        uint32_t slots = 0;
        uint64_t slot_size = 0;
        vkv_memory_strategy strategy = VKV_STRATEGY_AUTO;
        void *ring = NULL;
        VkBuffer buffer = (VkBuffer)(uintptr_t)1;
        EXPECT(vkv_frame_sender_geometry, (s, &slots, &slot_size), VKV_OK);
        TRUE(slots == 8 && slot_size == 4096);
        EXPECT(vkv_frame_receiver_ring, (r, &strategy, &ring, &buffer, NULL), VKV_OK);
        TRUE(strategy == VKV_STRATEGY_HOST && ring != NULL && buffer == VK_NULL_HANDLE);
        EXPECT(vkv_frame_receiver_ring, (r, NULL, NULL, NULL, NULL), VKV_ERR_INVALID_ARGUMENT);
        /* A frame larger than the stream's: refused, nothing sent, the stream goes on (frame 0 is next). */
        EXPECT(vkv_frame_sender_send, (s, data, 4097, &number), VKV_ERR_OUT_OF_BOUNDS);
        EXPECT(vkv_frame_sender_send, (s, NULL, 16, &number), VKV_ERR_INVALID_ARGUMENT);
        EXPECT(vkv_frame_receiver_release, (r, 0), VKV_ERR_INVALID_ARGUMENT); /* not held */
        EXPECT(vkv_frame_receiver_next, (r, 0, &frame, &state), VKV_OK);
        TRUE(state == VKV_FRAME_NONE);
        EXPECT(vkv_frame_receiver_next, (r, 100, &frame, &state), VKV_ERR_TIMEOUT);
        consume(r, s, 1000, 4096, VKV_FRAME_POLICY_BLOCK, 0, "block, host ring");
        EXPECT(vkv_frame_sender_close, (s), VKV_OK);
        EXPECT(vkv_frame_receiver_close, (r), VKV_OK);
        /* Calls after close. */
        EXPECT(vkv_frame_receiver_next, (r, 0, &frame, &state), VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_frame_sender_send, (s, data, 16, &number), VKV_ERR_INVALID_HANDLE);
        EXPECT(vkv_frame_receiver_close, (r), VKV_ERR_INVALID_HANDLE);
    }

    /* Drop policies under a slow consumer: what was dropped is counted exactly. */
    vkv_frame_policy drops[2] = {VKV_FRAME_POLICY_DROP_OLDEST, VKV_FRAME_POLICY_LATEST_WINS};
    for (int i = 0; i < 2; i++) {
        memset(&a, 0, sizeof a);
        a.options = options_of(8, 1024, drops[i]);
        a.options.ready_limit = 2;
        a.strategy = VKV_STRATEGY_HOST;
        if (pair(listener, addr, port, &a, 1024, &r, &s) == 0) {
            consume(r, s, 300, 1024, drops[i], 2000, i == 0 ? "drop-oldest, ready limit 2" : "latest-wins");
            vkv_frame_statistics stats;
            EXPECT(vkv_frame_receiver_statistics, (r, &stats), VKV_OK);
            TRUE(stats.dropped > 0); /* a 2 ms consumer against a sender that does not wait */
            EXPECT(vkv_frame_sender_close, (s), VKV_OK);
            EXPECT(vkv_frame_receiver_close, (r), VKV_OK);
        }
    }

    /* A ring in Vulkan memory (the automatic choice) with a timeline semaphore signalled per frame. */
    struct vk_setup vk;
    vkv_vulkan *vkv = NULL;
    if (vk_setup_create_with(&vk, "frames", 1) == 0) {
        EXPECT(vk_setup_open, (&vk, &vkv), VKV_OK);
        VkSemaphoreTypeCreateInfo type;
        memset(&type, 0, sizeof type);
        type.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
        type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
        VkSemaphoreCreateInfo sci;
        memset(&sci, 0, sizeof sci);
        sci.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
        sci.pNext = &type;
        VkSemaphore timeline = VK_NULL_HANDLE;
        TRUE(vkCreateSemaphore(vk.device, &sci, NULL, &timeline) == VK_SUCCESS);
        memset(&a, 0, sizeof a);
        a.options = options_of(8, 16384, VKV_FRAME_POLICY_BLOCK);
        a.vulkan = vkv;
        a.strategy = VKV_STRATEGY_AUTO;
        a.timeline = timeline;
        if (vkv && timeline && pair(listener, addr, port, &a, 16384, &r, &s) == 0) {
            vkv_memory_strategy strategy = VKV_STRATEGY_HOST;
            void *ring = NULL;
            VkBuffer buffer = VK_NULL_HANDLE;
            EXPECT(vkv_frame_receiver_ring, (r, &strategy, &ring, &buffer, NULL), VKV_OK);
            printf("  Vulkan ring on %s: strategy %d, host mapping %s\n", vk.device_name, (int)strategy, ring ? "yes" : "no");
            TRUE(strategy != VKV_STRATEGY_HOST && buffer != VK_NULL_HANDLE);
            consume(r, s, 200, 16384, VKV_FRAME_POLICY_BLOCK, 0, "block, Vulkan ring");
            uint64_t value = 0;
            TRUE(vkGetSemaphoreCounterValue(vk.device, timeline, &value) == VK_SUCCESS && value == 200);
            EXPECT(vkv_frame_sender_close, (s), VKV_OK);
            EXPECT(vkv_frame_receiver_close, (r), VKV_OK);
        }
        if (timeline) vkDestroySemaphore(vk.device, timeline, NULL);
        if (vkv) EXPECT(vkv_vulkan_close, (vkv), VKV_OK);
        vk_setup_destroy(&vk);
    } else {
        printf("skipped: the Vulkan ring (no Vulkan 1.2 device with timeline semaphores)\n");
    }

    /* A sender whose frames do not fit the slots is refused with the reason; the receiver's wait
     * goes on and takes the next sender. */
    {
        pthread_t t;
        memset(&a, 0, sizeof a);
        a.options = options_of(4, 1024, VKV_FRAME_POLICY_BLOCK);
        a.strategy = VKV_STRATEGY_HOST;
        a.listener = listener;
        a.wait_ms = 60000;
        pthread_create(&t, NULL, accept_thread, &a);
        EXPECT(vkv_frame_sender_connect, (addr, port, 2048, 64, 0, 10000, &s), VKV_ERR_CONNECTION);
        TRUE(strstr(vkv_last_error_message(), "do not fit") != NULL);
        TRUE(s == NULL);
        EXPECT(vkv_frame_sender_connect, (addr, port, 1024, 64, 0, 10000, &s), VKV_OK);
        pthread_join(t, NULL);
        r = a.receiver;
        TRUE(a.status == VKV_OK && r != NULL);
    }

    /* A stalled receiver: the consumer holds every slot, the sender's credit wait times out (in
     * time), and the stream goes on once the consumer releases. */
    if (r && s) {
        for (uint64_t f = 0; f < 4; f++) EXPECT(vkv_frame_sender_send, (s, data, 100, &number), VKV_OK);
        uint64_t held[4];
        for (int f = 0; f < 4; f++) {
            EXPECT(vkv_frame_receiver_next, (r, 5000, &frame, &state), VKV_OK);
            TRUE(state == VKV_FRAME_READY && frame.number == (uint64_t)f && frame.length == 100);
            held[f] = frame.number;
        }
        double t0 = now_seconds();
        EXPECT(vkv_frame_sender_wait_credit, (s, 300), VKV_ERR_TIMEOUT);
        double waited = now_seconds() - t0;
        TRUE(waited >= 0.25 && waited < 5.0);
        EXPECT(vkv_frame_sender_wait_credit, (s, 0), VKV_ERR_TIMEOUT);
        for (int f = 0; f < 4; f++) EXPECT(vkv_frame_receiver_release, (r, held[f]), VKV_OK);
        EXPECT(vkv_frame_receiver_release, (r, held[0]), VKV_ERR_INVALID_ARGUMENT); /* released already */
        /* The credit goes back when the consumer finds nothing waiting. */
        EXPECT(vkv_frame_receiver_next, (r, 0, &frame, &state), VKV_OK);
        EXPECT(vkv_frame_sender_wait_credit, (s, 5000), VKV_OK);
        EXPECT(vkv_frame_sender_send, (s, data, 100, &number), VKV_OK);
        TRUE(number == 4);

        /* The receiver goes away: the sender's next waits end with an error within the timeout. */
        EXPECT(vkv_frame_receiver_close, (r), VKV_OK);
        t0 = now_seconds();
        vkv_status st = VKV_OK;
        for (int f = 0; f < 16 && st == VKV_OK; f++) st = vkv_frame_sender_send(s, data, 100, &number);
        if (st == VKV_OK) st = vkv_frame_sender_wait_credit(s, 3000);
        waited = now_seconds() - t0;
        printf("  sender after the receiver closed: %s after %.2f s: %s\n", vkv_status_string(st), waited, vkv_last_error_message());
        TRUE(st == VKV_ERR_DISCONNECTED || st == VKV_ERR_TIMEOUT);
        TRUE(waited < 15.0);
        EXPECT(vkv_frame_sender_close, (s), VKV_OK);
    } else {
        if (r) vkv_frame_receiver_close(r);
        if (s) vkv_frame_sender_close(s);
    }

    EXPECT(vkv_listener_close, (listener), VKV_OK);
    EXPECT(vkv_device_close, (dev), VKV_OK);
    TRUE(vkv_live_handle_count() == 0);
}

/* ---- One stream between two hosts (--serve / --send) ------------------------------ */

#define TWO_HOSTS_PORT 18613
#define TWO_HOSTS_SLOTS 16
#define TWO_HOSTS_MAX 4096
#define TWO_HOSTS_FRAMES 2000
#define TWO_HOSTS_WAIT_MS 180000 /* the other host may reach its end of the stream this much later */
#define TWO_HOSTS_STEP_MS 30000  /* every wait inside the stream (TCG guests are slow) */

static uint64_t bytes_of_stream(uint64_t frames) {
    uint64_t total = 0;
    for (uint64_t f = 0; f < frames; f++) total += length_of(f, TWO_HOSTS_MAX);
    return total;
}

/* The receiving end: every frame once, in order, every byte checked. */
static void serve(const char *addr, uint16_t port, uint64_t frames) {
    vkv_device *dev = NULL;
    vkv_listener *listener = NULL;
    vkv_frame_receiver *r = NULL;
    EXPECT(vkv_device_open, (NULL, &dev), VKV_OK);
    if (dev) EXPECT(vkv_listen, (dev, addr, port, &listener), VKV_OK);
    if (!listener) {
        printf("  serve: cannot listen on %s port %u: %s\n", addr, (unsigned)port, vkv_last_error_message());
        if (dev) vkv_device_close(dev);
        return;
    }
    vkv_frame_receiver_options o = options_of(TWO_HOSTS_SLOTS, TWO_HOSTS_MAX, VKV_FRAME_POLICY_BLOCK);
    o.timeout_ms = TWO_HOSTS_STEP_MS;
    double t0 = now_seconds();
    vkv_status st = vkv_frame_receiver_accept(listener, &o, NULL, VKV_STRATEGY_HOST, VK_NULL_HANDLE, TWO_HOSTS_WAIT_MS, &r);
    if (st != VKV_OK) printf("  serve: accept: %s: %s\n", vkv_status_string(st), vkv_last_error_message());
    TRUE(st == VKV_OK && r != NULL);
    if (r) {
        printf("  serve: a sender connected after %.1f s\n", now_seconds() - t0);
        double t1 = now_seconds();
        uint64_t got = 0, bad_number = 0, bad_length = 0, bad_bytes = 0, next_expected = 0, bytes = 0;
        int32_t state = VKV_FRAME_NONE;
        vkv_frame frame;
        for (;;) {
            st = vkv_frame_receiver_next(r, TWO_HOSTS_STEP_MS, &frame, &state);
            if (st != VKV_OK || state != VKV_FRAME_READY) break;
            got++;
            if (frame.number != next_expected && bad_number++ < 5)
                printf("  serve: frame %llu arrived where %llu was due\n", (unsigned long long)frame.number,
                       (unsigned long long)next_expected);
            next_expected = frame.number + 1;
            uint64_t want = length_of(frame.number, TWO_HOSTS_MAX);
            if (frame.number >= frames || frame.length != want || !frame.data || !frame.has_checksum) {
                if (bad_length++ < 5)
                    printf("  serve: frame %llu%s: %llu bytes (want %llu), data %s, checksum %s\n",
                           (unsigned long long)frame.number, frame.number >= frames ? " (beyond the stream's)" : "",
                           (unsigned long long)frame.length, (unsigned long long)want, frame.data ? "mapped" : "NULL",
                           frame.has_checksum ? "sent" : "missing");
            } else {
                const uint8_t *p = frame.data;
                for (uint64_t i = 0; i < frame.length; i++)
                    if (p[i] != pattern(frame.number, i)) {
                        if (bad_bytes++ < 5)
                            printf("  serve: frame %llu byte %llu is 0x%02x, want 0x%02x\n", (unsigned long long)frame.number,
                                   (unsigned long long)i, p[i], pattern(frame.number, i));
                        break;
                    }
                bytes += frame.length;
            }
            EXPECT(vkv_frame_receiver_release, (r, frame.number), VKV_OK);
        }
        double seconds = now_seconds() - t1;
        if (st != VKV_OK) printf("  serve: next: %s: %s\n", vkv_status_string(st), vkv_last_error_message());
        TRUE(st == VKV_OK && state == VKV_FRAME_ENDED);
        TRUE(got == frames && next_expected == frames);
        TRUE(bad_number == 0 && bad_length == 0 && bad_bytes == 0);
        TRUE(bytes == bytes_of_stream(frames));
        vkv_frame_statistics stats;
        memset(&stats, 0, sizeof stats);
        EXPECT(vkv_frame_receiver_statistics, (r, &stats), VKV_OK);
        TRUE(stats.arrived == frames && stats.delivered == frames && stats.released == frames && stats.dropped == 0);
        TRUE(stats.bytes == bytes_of_stream(frames));
        TRUE(stats.latency_count == frames && stats.latency_p50_ns <= stats.latency_p99_ns &&
             stats.latency_p99_ns <= stats.latency_max_ns);
        printf("  serve: %llu frames (%llu wanted), %llu bytes checked, in %.2f s (%.0f frames/s); %llu credit writes; "
               "latency us p50 %.1f p99 %.1f max %.1f (across hosts only as good as their clock sync; 0 where the sender's clock is ahead)\n",
               (unsigned long long)got, (unsigned long long)frames, (unsigned long long)bytes, seconds,
               seconds > 0 ? (double)got / seconds : 0.0, (unsigned long long)stats.credit_writes, stats.latency_p50_ns / 1e3,
               stats.latency_p99_ns / 1e3, stats.latency_max_ns / 1e3);
        EXPECT(vkv_frame_receiver_close, (r), VKV_OK);
    }
    EXPECT(vkv_listener_close, (listener), VKV_OK);
    EXPECT(vkv_device_close, (dev), VKV_OK);
    TRUE(vkv_live_handle_count() == 0);
}

/* The sending end: connects (retrying while the receiver is not there yet), sends, finishes. */
static void send_stream(const char *peer, uint16_t port, uint64_t frames) {
    vkv_frame_sender *s = NULL;
    vkv_status st = VKV_ERR_CONNECTION;
    double t0 = now_seconds();
    int attempts = 0;
    /* Nothing listening yet is VKV_ERR_CONNECTION (refused) or VKV_ERR_TIMEOUT (no answer). */
    while ((st == VKV_ERR_CONNECTION || st == VKV_ERR_TIMEOUT) && (now_seconds() - t0) * 1000 < TWO_HOSTS_WAIT_MS) {
        if (attempts++) sleep_ms(250);
        st = vkv_frame_sender_connect(peer, port, TWO_HOSTS_MAX, TWO_HOSTS_SLOTS, 0, TWO_HOSTS_STEP_MS, &s);
    }
    if (st != VKV_OK)
        printf("  send: connect to %s port %u: %s after %d attempts in %.1f s: %s\n", peer, (unsigned)port,
               vkv_status_string(st), attempts, now_seconds() - t0, vkv_last_error_message());
    else
        printf("  send: connected after %d attempt(s) in %.1f s\n", attempts, now_seconds() - t0);
    TRUE(st == VKV_OK && s != NULL);
    if (!s) return;
    uint32_t slots = 0;
    uint64_t slot_size = 0;
    EXPECT(vkv_frame_sender_geometry, (s, &slots, &slot_size), VKV_OK);
    TRUE(slots == TWO_HOSTS_SLOTS && slot_size == TWO_HOSTS_MAX);
    uint8_t *buf = malloc(TWO_HOSTS_MAX);
    TRUE(buf != NULL);
    double t1 = now_seconds();
    st = buf ? VKV_OK : VKV_ERR_INTERNAL;
    uint64_t sent = 0;
    for (uint64_t f = 0; f < frames && st == VKV_OK; f++) {
        uint64_t n = length_of(f, TWO_HOSTS_MAX), number = UINT64_MAX;
        for (uint64_t i = 0; i < n; i++) buf[i] = pattern(f, i);
        st = vkv_frame_sender_send(s, buf, n, &number);
        if (st != VKV_OK) {
            printf("  send: frame %llu: %s: %s\n", (unsigned long long)f, vkv_status_string(st), vkv_last_error_message());
        } else if (number != f) {
            printf("  send: frame %llu came back as number %llu\n", (unsigned long long)f, (unsigned long long)number);
            st = VKV_ERR_INTERNAL;
        } else {
            sent++;
        }
    }
    TRUE(st == VKV_OK && sent == frames);
    free(buf);
    vkv_frame_sender_summary summary;
    memset(&summary, 0, sizeof summary);
    if (st == VKV_OK) {
        /* Returns once the receiver released every frame. */
        EXPECT(vkv_frame_sender_finish, (s, &summary), VKV_OK);
        TRUE(summary.frames == frames && summary.bytes == bytes_of_stream(frames));
        double seconds = now_seconds() - t1;
        printf("  send: %llu frames, %llu bytes, all released by the receiver, in %.2f s (%.0f frames/s); %llu credit waits\n",
               (unsigned long long)summary.frames, (unsigned long long)summary.bytes, seconds,
               seconds > 0 ? (double)summary.frames / seconds : 0.0, (unsigned long long)summary.credit_waits);
    }
    EXPECT(vkv_frame_sender_close, (s), VKV_OK);
    TRUE(vkv_live_handle_count() == 0);
}

/* --port P / --frames N after the address; 0 on success. */
static int parse_stream_options(int argc, char **argv, uint16_t *port, uint64_t *frames) {
    for (int i = 3; i < argc; i += 2) {
        if (i + 1 >= argc) return 1;
        char *end = NULL;
        unsigned long long v = strtoull(argv[i + 1], &end, 10);
        if (!end || *end || argv[i + 1][0] == '-' || argv[i + 1][0] == '\0') return 1;
        if (strcmp(argv[i], "--port") == 0 && v >= 1 && v <= 65535) *port = (uint16_t)v;
        else if (strcmp(argv[i], "--frames") == 0 && v >= 1 && v <= 100000000ull) *frames = v;
        else return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *rdma = NULL, *serve_addr = NULL, *send_peer = NULL;
    uint16_t port = TWO_HOSTS_PORT;
    uint64_t frames = TWO_HOSTS_FRAMES;
    int bad_usage = 0;
    if (argc == 3 && strcmp(argv[1], "--rdma") == 0) rdma = argv[2];
    else if (argc >= 3 && strcmp(argv[1], "--serve") == 0) serve_addr = argv[2];
    else if (argc >= 3 && strcmp(argv[1], "--send") == 0) send_peer = argv[2];
    else if (argc != 1) bad_usage = 1;
    if ((serve_addr || send_peer) && parse_stream_options(argc, argv, &port, &frames) != 0) bad_usage = 1;
    if (bad_usage) {
        fprintf(stderr, "usage: frames [--rdma ADDR]\n"
                        "       frames --serve ADDR [--port P] [--frames N]\n"
                        "       frames --send PEER [--port P] [--frames N]\n");
        return 2;
    }
    const char *what = " (host)";
    if (serve_addr) {
        serve(serve_addr, port, frames);
        what = " (serve)";
    } else if (send_peer) {
        send_stream(send_peer, port, frames);
        what = " (send)";
    } else {
        host_checks();
        if (rdma) {
            rdma_checks(rdma);
            what = " (with RDMA)";
        }
    }
    printf("frames(c): %d checks, %d failed%s\n", checks, failures, what);
    return failures ? 1 : 0;
}
