#ifndef VKVERBS_CVERBS_SHIM_H
#define VKVERBS_CVERBS_SHIM_H
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
#include <poll.h>
#include <fcntl.h>
#include <stdint.h>
#include <time.h>

/* Loads the NIC may change under us: spinning on memory that an RDMA write fills (as
 * perftest's write latency does) needs a load the compiler cannot hoist out of the loop,
 * and an acquire so the bytes before the flag are read after it. */
static inline uint8_t vkv_load_acquire_u8(const void *p) {
    return __atomic_load_n((const volatile uint8_t *)p, __ATOMIC_ACQUIRE);
}
static inline uint64_t vkv_load_acquire_u64(const void *p) {
    return __atomic_load_n((const volatile uint64_t *)p, __ATOMIC_ACQUIRE);
}
static inline uint64_t vkv_monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_RAW, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}
#endif
