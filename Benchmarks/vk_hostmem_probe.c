// Does the kind of host memory set how fast the GPU's copy engine moves data to and from it? Copies
// between one device-local buffer and host memory of several kinds, each way, and reports the best
// GPU time (timestamps around the copy alone) and the best wall clock (submit, then poll the
// timeline until the copy and its closing barrier are done; no timestamps) per size:
//   driver-coherent     vkAllocateMemory, HOST_VISIBLE|HOST_COHERENT, not HOST_CACHED
//   driver-cached       vkAllocateMemory, HOST_VISIBLE|HOST_COHERENT|HOST_CACHED
//   import-4k           mmap'd anonymous pages with MADV_NOHUGEPAGE (4 KiB pages), imported with
//                       VK_EXT_external_memory_host
//   import-memalign     posix_memalign(4096) pages, as the library allocated them until now
//   import-thp          mmap'd, aligned to 2 MiB, MADV_HUGEPAGE before the first touch (transparent
//                       huge pages where the kernel allows them)
//   import-hugetlb      MAP_HUGETLB (2 MiB pages from the hugetlb pool), where the pool has them
// Imports are made once per memory type the pointer allows (vkGetMemoryHostPointerPropertiesEXT).
// For each host buffer the probe reads /proc/self/smaps and reports how much of it sits on huge
// pages (AnonHugePages, Private_Hugetlb, KernelPageSize). d2h copies close with the barrier the
// host needs (TRANSFER_WRITE -> HOST_READ), h2d copies with none (the host's wait on the timeline
// is the end). The first and last words of every copy's destination are checked.
// With --dedicated the device-local buffer is a dedicated allocation (one more row set).
//
// Build: cc -O2 -Wall -o vk_hostmem_probe Benchmarks/vk_hostmem_probe.c -lvulkan
// Run:   vk_hostmem_probe [--sizes 1048576,16777216,...] [--iterations N] [--family F] [--dedicated]
//        [--only NAME,NAME]      one JSON object per line on stdout
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <vulkan/vulkan.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif

static VkInstance instance;
static VkPhysicalDevice phys;
static VkDevice dev;
static VkQueue queue;
static VkCommandPool pool;
static VkQueryPool qpool;
static VkSemaphore timeline;
static uint64_t timeline_value;
static uint32_t family;
static double ts_period;
static int iterations = 10, warmups = 2;
static VkDeviceSize min_import_alignment = 4096;
static PFN_vkGetMemoryHostPointerPropertiesEXT get_host_pointer_props;
static VkPhysicalDeviceMemoryProperties memprops;

static void die(const char *what, VkResult r) {
    fprintf(stderr, "vk_hostmem_probe: %s failed: %d\n", what, r);
    exit(1);
}
#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) die(#call, r_); } while (0)

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Transfer writes made visible to the next accesses named (a global memory barrier). */
static void after_transfer_writes(VkCommandBuffer cb, VkAccessFlags dst_access, VkPipelineStageFlags dst_stage) {
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = dst_access;
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

static void setup(void) {
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.apiVersion = VK_API_VERSION_1_3;
    VkInstanceCreateInfo ii = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ii.pApplicationInfo = &app;
    CHECK(vkCreateInstance(&ii, NULL, &instance));
    uint32_t n = 8;
    VkPhysicalDevice list[8];
    if (vkEnumeratePhysicalDevices(instance, &n, list) < 0 || n == 0) die("finding a Vulkan device", VK_ERROR_INITIALIZATION_FAILED);
    phys = list[0];
    VkPhysicalDeviceProperties props;
    for (uint32_t i = 0; i < n; i++) {
        vkGetPhysicalDeviceProperties(list[i], &props);
        if (props.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU) { phys = list[i]; break; }
    }
    VkPhysicalDeviceExternalMemoryHostPropertiesEXT hp = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT};
    VkPhysicalDeviceProperties2 p2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2};
    p2.pNext = &hp;
    vkGetPhysicalDeviceProperties2(phys, &p2);
    props = p2.properties;
    if (hp.minImportedHostPointerAlignment) min_import_alignment = hp.minImportedHostPointerAlignment;
    ts_period = props.limits.timestampPeriod;
    vkGetPhysicalDeviceMemoryProperties(phys, &memprops);
    uint32_t nf = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nf, NULL);
    if (family >= nf) die("--family (no such queue family)", VK_ERROR_INITIALIZATION_FAILED);

    VkPhysicalDeviceVulkan12Features e12 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    e12.timelineSemaphore = VK_TRUE;
    e12.hostQueryReset = VK_TRUE;
    float priority = 1.0f;
    VkDeviceQueueCreateInfo qi = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qi.queueFamilyIndex = family;
    qi.queueCount = 1;
    qi.pQueuePriorities = &priority;
    const char *exts[] = {VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME};
    VkDeviceCreateInfo di = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    di.pNext = &e12;
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    di.enabledExtensionCount = 1;
    di.ppEnabledExtensionNames = exts;
    CHECK(vkCreateDevice(phys, &di, NULL, &dev));
    vkGetDeviceQueue(dev, family, 0, &queue);
    get_host_pointer_props = (PFN_vkGetMemoryHostPointerPropertiesEXT)vkGetDeviceProcAddr(dev, "vkGetMemoryHostPointerPropertiesEXT");
    if (!get_host_pointer_props) die("vkGetMemoryHostPointerPropertiesEXT", VK_ERROR_EXTENSION_NOT_PRESENT);
    VkCommandPoolCreateInfo pi = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pi.queueFamilyIndex = family;
    CHECK(vkCreateCommandPool(dev, &pi, NULL, &pool));
    VkQueryPoolCreateInfo qp = {VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qp.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qp.queryCount = 2;
    CHECK(vkCreateQueryPool(dev, &qp, NULL, &qpool));
    VkSemaphoreTypeCreateInfo ti = {VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO};
    ti.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
    VkSemaphoreCreateInfo si = {VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    si.pNext = &ti;
    CHECK(vkCreateSemaphore(dev, &si, NULL, &timeline));
    printf("{\"device\": \"%s\", \"driverVersion\": %u, \"family\": %u, \"minImportedHostPointerAlignment\": %llu, "
           "\"timestampPeriod\": %g, \"memoryTypes\": [",
           props.deviceName, props.driverVersion, family, (unsigned long long)min_import_alignment, ts_period);
    for (uint32_t i = 0; i < memprops.memoryTypeCount; i++)
        printf("%s{\"index\": %u, \"flags\": %u, \"heap\": %u}", i ? ", " : "", i, memprops.memoryTypes[i].propertyFlags,
               memprops.memoryTypes[i].heapIndex);
    printf("]}\n");
    fflush(stdout);
}

// A buffer over memory from vkAllocateMemory or from imported host pages.
struct buf {
    VkBuffer buffer;
    VkDeviceMemory memory;
    volatile uint8_t *host;   // mapped or imported pages; NULL for device-local memory
    uint32_t type;
};

static VkBuffer new_buffer(VkDeviceSize size, int external) {
    VkExternalMemoryBufferCreateInfo eb = {VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO};
    eb.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
    VkBufferCreateInfo bi = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bi.pNext = external ? &eb : NULL;
    bi.size = size;
    bi.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    VkBuffer b;
    CHECK(vkCreateBuffer(dev, &bi, NULL, &b));
    return b;
}

// The first type in bits with all of want and none of avoid (else any with want); -1 if none.
static int find_type(uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid) {
    for (uint32_t i = 0; i < memprops.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (memprops.memoryTypes[i].propertyFlags & want) == want &&
            !(memprops.memoryTypes[i].propertyFlags & avoid))
            return (int)i;
    return avoid ? find_type(bits, want, 0) : -1;  // A CPU driver (lavapipe) has one type for everything.
}

static int allocate(VkDeviceSize size, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid, int dedicated, struct buf *out) {
    memset(out, 0, sizeof *out);
    out->buffer = new_buffer(size, 0);
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(dev, out->buffer, &req);
    int type = find_type(req.memoryTypeBits, want, avoid);
    if (type < 0) { vkDestroyBuffer(dev, out->buffer, NULL); return -1; }
    VkMemoryDedicatedAllocateInfo ded = {VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO};
    ded.buffer = out->buffer;
    VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.pNext = dedicated ? &ded : NULL;
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = (uint32_t)type;
    CHECK(vkAllocateMemory(dev, &ai, NULL, &out->memory));
    CHECK(vkBindBufferMemory(dev, out->buffer, out->memory, 0));
    out->type = (uint32_t)type;
    if (memprops.memoryTypes[type].propertyFlags & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT) {
        void *p;
        CHECK(vkMapMemory(dev, out->memory, 0, VK_WHOLE_SIZE, 0, &p));
        out->host = p;
    }
    return 0;
}

static int import_pages(void *pages, VkDeviceSize size, uint32_t type, struct buf *out) {
    memset(out, 0, sizeof *out);
    out->buffer = new_buffer(size, 1);
    VkImportMemoryHostPointerInfoEXT imp = {VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT};
    imp.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
    imp.pHostPointer = pages;
    VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.pNext = &imp;
    ai.allocationSize = size;
    ai.memoryTypeIndex = type;
    VkResult r = vkAllocateMemory(dev, &ai, NULL, &out->memory);
    if (r != VK_SUCCESS) {
        fprintf(stderr, "vk_hostmem_probe: importing %llu B as type %u: %d\n", (unsigned long long)size, type, r);
        vkDestroyBuffer(dev, out->buffer, NULL);
        return -1;
    }
    CHECK(vkBindBufferMemory(dev, out->buffer, out->memory, 0));
    out->host = pages;
    out->type = type;
    return 0;
}

static void release(struct buf *b) {
    vkDestroyBuffer(dev, b->buffer, NULL);
    vkFreeMemory(dev, b->memory, NULL);
    memset(b, 0, sizeof *b);
}

// What /proc/self/smaps says about the mapping that holds addr.
static void smaps_of(const void *addr, char *out, size_t cap) {
    FILE *f = fopen("/proc/self/smaps", "r");
    snprintf(out, cap, "\"smaps\": null");
    if (!f) return;
    char line[512];
    int in = 0;
    long rss = -1, anon_huge = -1, hugetlb = -1, kps = -1, size = -1;
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            if (in) break;
            in = a >= lo && a < hi;
            continue;
        }
        if (!in) continue;
        long v;
        if (sscanf(line, "Size: %ld kB", &v) == 1) size = v;
        else if (sscanf(line, "Rss: %ld kB", &v) == 1) rss = v;
        else if (sscanf(line, "AnonHugePages: %ld kB", &v) == 1) anon_huge = v;
        else if (sscanf(line, "Private_Hugetlb: %ld kB", &v) == 1) hugetlb = v;
        else if (sscanf(line, "KernelPageSize: %ld kB", &v) == 1) kps = v;
    }
    fclose(f);
    snprintf(out, cap, "\"mappingKiB\": %ld, \"rssKiB\": %ld, \"anonHugePagesKiB\": %ld, \"privateHugetlbKiB\": %ld, "
             "\"kernelPageSizeKiB\": %ld", size, rss, anon_huge, hugetlb, kps);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void submit_and_wait(VkCommandBuffer cb) {
    uint64_t value = ++timeline_value;
    VkTimelineSemaphoreSubmitInfo tsi = {VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
    tsi.signalSemaphoreValueCount = 1;
    tsi.pSignalSemaphoreValues = &value;
    VkSubmitInfo s = {VK_STRUCTURE_TYPE_SUBMIT_INFO};
    s.pNext = &tsi;
    s.commandBufferCount = 1;
    s.pCommandBuffers = &cb;
    s.signalSemaphoreCount = 1;
    s.pSignalSemaphores = &timeline;
    CHECK(vkQueueSubmit(queue, 1, &s, VK_NULL_HANDLE));
    uint64_t seen = 0, t0 = now_ns();
    for (;;) {
        CHECK(vkGetSemaphoreCounterValue(dev, timeline, &seen));
        if (seen >= value) break;
        if (now_ns() - t0 > 10000000000ull) die("waiting 10 s for a copy", VK_TIMEOUT);
    }
}

static void record(VkCommandBuffer cb, VkBuffer src, VkBuffer dst, VkDeviceSize size, int d2h, int timestamps) {
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    CHECK(vkResetCommandBuffer(cb, 0));
    CHECK(vkBeginCommandBuffer(cb, &bi));
    if (timestamps) vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, qpool, 0);
    VkBufferCopy region = {0, 0, size};
    vkCmdCopyBuffer(cb, src, dst, 1, &region);
    if (timestamps) vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, qpool, 1);
    if (d2h) {
        after_transfer_writes(cb, VK_ACCESS_HOST_READ_BIT, VK_PIPELINE_STAGE_HOST_BIT);
    }
    CHECK(vkEndCommandBuffer(cb));
}

static int nsizes;
static VkDeviceSize sizes[16];
static int failures;

// Both directions, every size, between local and host; one JSON line per (direction, size).
static void measure(const char *name, struct buf *local, struct buf *host, const char *smaps, int dedicated) {
    VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = pool;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    VkCommandBuffer cb;
    CHECK(vkAllocateCommandBuffers(dev, &ai, &cb));
    uint64_t *gpu = calloc((size_t)iterations, sizeof *gpu), *wall = calloc((size_t)iterations, sizeof *wall);
    VkCommandBuffer fill;
    CHECK(vkAllocateCommandBuffers(dev, &ai, &fill));
    for (int d = 0; d < 2; d++) {
        int d2h = d == 0;
        for (int s = 0; s < nsizes; s++) {
            VkDeviceSize size = sizes[s];
            uint8_t mark = (uint8_t)(0x11 + 0x22 * s + d);
            // The source holds mark at both ends; the destination's ends are cleared before each copy.
            if (d2h) {
                VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
                CHECK(vkResetCommandBuffer(fill, 0));
                CHECK(vkBeginCommandBuffer(fill, &bi));
                vkCmdFillBuffer(fill, local->buffer, 0, size, mark * 0x01010101u);
                after_transfer_writes(fill, VK_ACCESS_TRANSFER_READ_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT);
                CHECK(vkEndCommandBuffer(fill));
                submit_and_wait(fill);
            } else {
                host->host[0] = mark;
                host->host[size - 1] = mark;
            }
            int ok = 1;
            for (int timed = 1; timed >= 0; timed--) {
                record(cb, d2h ? local->buffer : host->buffer, d2h ? host->buffer : local->buffer, size, d2h, timed);
                for (int i = -warmups; i < iterations; i++) {
                    if (d2h) { host->host[0] = 0; host->host[size - 1] = 0; }
                    if (timed) vkResetQueryPool(dev, qpool, 0, 2);
                    uint64_t t0 = now_ns();
                    submit_and_wait(cb);
                    uint64_t t1 = now_ns();
                    if (d2h && (host->host[0] != mark || host->host[size - 1] != mark)) ok = 0;
                    if (i < 0) continue;
                    if (timed) {
                        uint64_t q[2];
                        CHECK(vkGetQueryPoolResults(dev, qpool, 0, 2, sizeof q, q, sizeof q[0], VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
                        gpu[i] = (uint64_t)((double)(q[1] - q[0]) * ts_period);
                    } else {
                        wall[i] = t1 - t0;
                    }
                }
            }
            if (!d2h) {
                // Read the device buffer's ends back through a small copy into the host buffer's tail.
                VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
                CHECK(vkResetCommandBuffer(fill, 0));
                CHECK(vkBeginCommandBuffer(fill, &bi));
                VkBufferCopy back[2] = {{0, 0, 4}, {size - 4, 4, 4}};
                host->host[0] = host->host[7] = 0;
                after_transfer_writes(fill, VK_ACCESS_TRANSFER_READ_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT);
                vkCmdCopyBuffer(fill, local->buffer, host->buffer, 2, back);
                after_transfer_writes(fill, VK_ACCESS_HOST_READ_BIT, VK_PIPELINE_STAGE_HOST_BIT);
                CHECK(vkEndCommandBuffer(fill));
                submit_and_wait(fill);
                ok = host->host[0] == mark && host->host[7] == mark;
            }
            if (!ok) failures++;
            qsort(gpu, (size_t)iterations, sizeof *gpu, cmp_u64);
            qsort(wall, (size_t)iterations, sizeof *wall, cmp_u64);
            printf("{\"host\": \"%s\", \"memoryType\": %u, \"typeFlags\": %u, \"dedicatedLocal\": %d, \"direction\": \"%s\", "
                   "\"size\": %llu, \"iterations\": %d, \"gpuBestGBps\": %.3f, \"gpuMedianGBps\": %.3f, "
                   "\"wallBestGBps\": %.3f, \"wallMedianGBps\": %.3f, \"wallBestUs\": %.2f, \"verified\": %s, %s}\n",
                   name, host->type, memprops.memoryTypes[host->type].propertyFlags, dedicated, d2h ? "d2h" : "h2d",
                   (unsigned long long)size, iterations, (double)size / (double)gpu[0], (double)size / (double)gpu[iterations / 2],
                   (double)size / (double)wall[0], (double)size / (double)wall[iterations / 2], wall[0] / 1e3,
                   ok ? "true" : "false", smaps);
            fflush(stdout);
        }
    }
    free(gpu);
    free(wall);
    vkFreeCommandBuffers(dev, pool, 1, &fill);
    vkFreeCommandBuffers(dev, pool, 1, &cb);
}

static int wanted(const char *only, const char *name) {
    if (!only) return 1;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

// Host pages of one kind: returns the pointer to import (aligned) and what to munmap/free.
enum kind { K4K, KMEMALIGN, KTHP, KHUGETLB };
static void *host_pages(enum kind k, size_t size, void **base, size_t *mapped) {
    const size_t huge = 2u << 20;
    void *p = NULL;
    *base = NULL;
    *mapped = 0;
    switch (k) {
    case K4K:
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
        if (madvise(p, size, MADV_NOHUGEPAGE)) perror("vk_hostmem_probe: madvise(MADV_NOHUGEPAGE)");
        *base = p;
        *mapped = size;
        break;
    case KMEMALIGN:
        if (posix_memalign(&p, 4096, size)) return NULL;
        *base = p;
        break;
    case KTHP: {
        char *raw = mmap(NULL, size + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (raw == MAP_FAILED) return NULL;
        p = (void *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
        if (madvise(p, size, MADV_HUGEPAGE)) perror("vk_hostmem_probe: madvise(MADV_HUGEPAGE)");
        *base = raw;
        *mapped = size + huge;
        break;
    }
    case KHUGETLB:
        p = mmap(NULL, (size + huge - 1) & ~(huge - 1), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
        if (p == MAP_FAILED) { perror("vk_hostmem_probe: mmap(MAP_HUGETLB)"); return NULL; }
        *base = p;
        *mapped = (size + huge - 1) & ~(huge - 1);
        break;
    }
    memset(p, 0, size);  // Touch every page (after madvise, so THP can back it).
    return p;
}

int main(int argc, char **argv) {
    const char *only = NULL;
    int dedicated = 0;
    VkDeviceSize defaults[] = {1u << 20, 16u << 20, 256u << 20, 1u << 30};
    nsizes = 4;
    memcpy(sizes, defaults, sizeof defaults);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iterations") && i + 1 < argc) iterations = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--family") && i + 1 < argc) family = (uint32_t)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--dedicated")) dedicated = 1;
        else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *p = strtok(argv[++i], ","); p && nsizes < 16; p = strtok(NULL, ",")) sizes[nsizes++] = strtoull(p, NULL, 0);
        } else {
            fprintf(stderr, "usage: vk_hostmem_probe [--sizes A,B,...] [--iterations N] [--family F] [--dedicated] [--only NAME,...]\n");
            return 2;
        }
    }
    VkDeviceSize largest = 0;
    for (int i = 0; i < nsizes; i++) {
        if (sizes[i] < 8 || sizes[i] % 4096) { fprintf(stderr, "vk_hostmem_probe: sizes must be multiples of 4096\n"); return 2; }
        if (sizes[i] > largest) largest = sizes[i];
    }
    if (iterations < 1) { fprintf(stderr, "vk_hostmem_probe: need --iterations >= 1\n"); return 2; }
    setup();
    char smaps[256];
    struct buf local, local_ded, host;
    if (allocate(largest, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, 0, &local))
        die("device-local memory", VK_ERROR_OUT_OF_DEVICE_MEMORY);
    if (dedicated && allocate(largest, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, 1, &local_ded))
        die("dedicated device-local memory", VK_ERROR_OUT_OF_DEVICE_MEMORY);

    // The driver's own host memory.
    static const struct { const char *name; VkMemoryPropertyFlags want, avoid; } driver[] = {
        {"driver-coherent", VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
         VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT | VK_MEMORY_PROPERTY_HOST_CACHED_BIT},
        {"driver-cached", VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT | VK_MEMORY_PROPERTY_HOST_CACHED_BIT,
         VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT},
    };
    for (size_t k = 0; k < 2; k++) {
        if (!wanted(only, driver[k].name)) continue;
        if (allocate(largest, driver[k].want, driver[k].avoid, 0, &host)) {
            printf("{\"host\": \"%s\", \"skipped\": \"no such memory type\"}\n", driver[k].name);
            continue;
        }
        smaps_of((const void *)host.host, smaps, sizeof smaps);
        measure(driver[k].name, &local, &host, smaps, 0);
        if (dedicated) measure(driver[k].name, &local_ded, &host, smaps, 1);
        release(&host);
    }

    // Imported host pages.
    static const struct { const char *name; enum kind kind; } imports[] = {
        {"import-4k", K4K}, {"import-memalign", KMEMALIGN}, {"import-thp", KTHP}, {"import-hugetlb", KHUGETLB},
    };
    for (size_t k = 0; k < 4; k++) {
        if (!wanted(only, imports[k].name)) continue;
        void *base;
        size_t mapped;
        VkDeviceSize size = (largest + min_import_alignment - 1) / min_import_alignment * min_import_alignment;
        void *pages = host_pages(imports[k].kind, size, &base, &mapped);
        if (!pages) {
            printf("{\"host\": \"%s\", \"skipped\": \"no pages of this kind\"}\n", imports[k].name);
            continue;
        }
        smaps_of(pages, smaps, sizeof smaps);
        VkMemoryHostPointerPropertiesEXT hp = {VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
        CHECK(get_host_pointer_props(dev, VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, pages, &hp));
        for (uint32_t t = 0; t < memprops.memoryTypeCount; t++) {
            if (!(hp.memoryTypeBits & (1u << t))) continue;
            if (import_pages(pages, size, t, &host)) {
                printf("{\"host\": \"%s\", \"memoryType\": %u, \"skipped\": \"import failed\"}\n", imports[k].name, t);
                continue;
            }
            measure(imports[k].name, &local, &host, smaps, 0);
            release(&host);
        }
        if (mapped) munmap(base, mapped);
        else free(base);
    }
    CHECK(vkDeviceWaitIdle(dev));
    if (dedicated) release(&local_ded);
    release(&local);
    vkDestroySemaphore(dev, timeline, NULL);
    vkDestroyQueryPool(dev, qpool, NULL);
    vkDestroyCommandPool(dev, pool, NULL);
    vkDestroyDevice(dev, NULL);
    vkDestroyInstance(instance, NULL);
    if (failures) fprintf(stderr, "vk_hostmem_probe: %d size/direction pairs had wrong bytes\n", failures);
    return failures ? 1 : 0;
}
