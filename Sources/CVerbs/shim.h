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
/* A counter for timing microsecond intervals, as perftest's get_cycles. Where the kernel's
 * clocksource is not the TSC, every clock_gettime is a system call that reads an emulated
 * timer (about 0.8 us in the fabric's QEMU guests, whose TSCs the kernel marks unstable):
 * several per ping-pong would be a large part of what is measured. Callers convert ticks
 * to nanoseconds with a rate they calibrate against vkv_monotonic_ns. */
static inline uint64_t vkv_cycles(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ __volatile__("isb\n\tmrs %0, cntvct_el0" : "=r"(v) : : "memory");
    return v;
#else
    return vkv_monotonic_ns();
#endif
}
/* 1 where vkv_cycles is vkv_monotonic_ns itself (no cycle counter): no calibration needed. */
static inline int vkv_cycles_are_ns(void) {
#if defined(__x86_64__) || defined(__i386__) || defined(__aarch64__)
    return 0;
#else
    return 1;
#endif
}
#endif
