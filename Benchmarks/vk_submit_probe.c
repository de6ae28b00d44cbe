// Where the time of one small GPU copy goes on a Vulkan driver: submits one copy (device-local
// buffer -> host-visible system memory, or back) recorded once, again and again, and times each
// phase on the host: vkQueueSubmit / vkQueueSubmit2, and from its return until the host sees the
// completion (a timeline counter read, or a word the GPU writes into host memory after the copy).
// With VK_EXT_calibrated_timestamps it also puts the GPU's own timestamps on the host's clock, so
// the wait splits into: GPU start after the submit returned, the copy, the end of the
// command buffer until the host saw it. Each variant: --iterations submissions after 20 warm-ups,
// medians; one JSON object per line on stdout. Every copy's destination is checked at the end.
//
// Build: cc -O2 -o vk_submit_probe Benchmarks/vk_submit_probe.c -lvulkan
// Run:   vk_submit_probe [--iterations N] [--sizes 4096,65536,...]
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

#define MAXQ 8
static VkInstance instance;
static VkPhysicalDevice phys;
static VkDevice dev;
static uint32_t nfamilies;
static VkQueueFamilyProperties families[MAXQ];
static VkQueue queues[MAXQ];
static VkCommandPool pools[MAXQ];
static int has_sync2, has_calibrated;
static double ts_period;
static uint32_t ts_bits[MAXQ];
static PFN_vkGetCalibratedTimestampsEXT get_calibrated;
static VkBuffer local_buf, host_buf, marker_buf;
static VkDeviceMemory local_mem, host_mem, marker_mem;
static volatile uint32_t *host_map, *marker_map;
static VkQueryPool qpool;
static VkSemaphore timeline, released;
static uint64_t timeline_value;
static VkFence fence;
static int iterations = 2000;

static void die(const char *what, VkResult r) {
    fprintf(stderr, "vk_submit_probe: %s failed: %d\n", what, r);
    exit(1);
}
#define CHECK(call) do { VkResult r_ = (call); if (r_ != VK_SUCCESS) die(#call, r_); } while (0)

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    if (n == 0) return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static uint32_t memory_type(uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid) {
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(phys, &mp);
    for (uint32_t i = 0; i < mp.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want && !(mp.memoryTypes[i].propertyFlags & avoid))
            return i;
    if (avoid) return memory_type(bits, want, 0);  // A CPU driver (lavapipe) has only device-local types.
    fprintf(stderr, "vk_submit_probe: no memory type with flags %#x\n", want);
    exit(1);
}

static void make_buffer(VkDeviceSize size, VkMemoryPropertyFlags want, VkMemoryPropertyFlags avoid, VkBuffer *buf,
                        VkDeviceMemory *mem, volatile uint32_t **map) {
    VkBufferCreateInfo bi = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bi.size = size;
    bi.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    CHECK(vkCreateBuffer(dev, &bi, NULL, buf));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(dev, *buf, &req);
    VkMemoryAllocateInfo ai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = memory_type(req.memoryTypeBits, want, avoid);
    CHECK(vkAllocateMemory(dev, &ai, NULL, mem));
    CHECK(vkBindBufferMemory(dev, *buf, *mem, 0));
    if (map) {
        void *p;
        CHECK(vkMapMemory(dev, *mem, 0, VK_WHOLE_SIZE, 0, &p));
        *map = p;
    }
}

static void setup(VkDeviceSize largest) {
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.apiVersion = VK_API_VERSION_1_3;
    VkInstanceCreateInfo ii = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ii.pApplicationInfo = &app;
    CHECK(vkCreateInstance(&ii, NULL, &instance));
    uint32_t n = 8;
    VkPhysicalDevice list[8];
    CHECK(vkEnumeratePhysicalDevices(instance, &n, list) < 0 ? VK_ERROR_INITIALIZATION_FAILED : VK_SUCCESS);
    if (n == 0) die("finding a Vulkan device", VK_ERROR_INITIALIZATION_FAILED);
    phys = list[0];
    VkPhysicalDeviceProperties props;
    for (uint32_t i = 0; i < n; i++) {
        vkGetPhysicalDeviceProperties(list[i], &props);
        if (props.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU) { phys = list[i]; break; }
    }
    vkGetPhysicalDeviceProperties(phys, &props);
    ts_period = props.limits.timestampPeriod;
    nfamilies = MAXQ;
    vkGetPhysicalDeviceQueueFamilyProperties(phys, &nfamilies, families);

    uint32_t next = 0;
    vkEnumerateDeviceExtensionProperties(phys, NULL, &next, NULL);
    VkExtensionProperties *exts = calloc(next, sizeof *exts);
    vkEnumerateDeviceExtensionProperties(phys, NULL, &next, exts);
    const char *enabled[2];
    uint32_t nenabled = 0;
    for (uint32_t i = 0; i < next; i++)
        if (!strcmp(exts[i].extensionName, VK_EXT_CALIBRATED_TIMESTAMPS_EXTENSION_NAME)) {
            enabled[nenabled++] = VK_EXT_CALIBRATED_TIMESTAMPS_EXTENSION_NAME;
            has_calibrated = 1;
        }
    free(exts);

    VkPhysicalDeviceVulkan13Features f13 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
    VkPhysicalDeviceVulkan12Features f12 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    f12.pNext = props.apiVersion >= VK_API_VERSION_1_3 ? &f13 : NULL;
    VkPhysicalDeviceFeatures2 f2 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    f2.pNext = &f12;
    vkGetPhysicalDeviceFeatures2(phys, &f2);
    if (!f12.timelineSemaphore) die("timelineSemaphore feature", VK_ERROR_FEATURE_NOT_PRESENT);
    has_sync2 = f13.synchronization2;
    VkPhysicalDeviceVulkan13Features e13 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES};
    e13.synchronization2 = VK_TRUE;
    VkPhysicalDeviceVulkan12Features e12 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES};
    e12.timelineSemaphore = VK_TRUE;
    e12.pNext = has_sync2 ? &e13 : NULL;

    float priority = 1.0f;
    VkDeviceQueueCreateInfo qi[MAXQ];
    uint32_t nq = 0;
    for (uint32_t f = 0; f < nfamilies; f++) {
        if (!(families[f].queueFlags & (VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT | VK_QUEUE_TRANSFER_BIT))) continue;
        memset(&qi[nq], 0, sizeof qi[nq]);
        qi[nq].sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
        qi[nq].queueFamilyIndex = f;
        qi[nq].queueCount = 1;
        qi[nq].pQueuePriorities = &priority;
        nq++;
    }
    VkDeviceCreateInfo di = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    di.pNext = &e12;
    di.queueCreateInfoCount = nq;
    di.pQueueCreateInfos = qi;
    di.enabledExtensionCount = nenabled;
    di.ppEnabledExtensionNames = enabled;
    CHECK(vkCreateDevice(phys, &di, NULL, &dev));
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t f = qi[i].queueFamilyIndex;
        vkGetDeviceQueue(dev, f, 0, &queues[f]);
        VkCommandPoolCreateInfo pi = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
        pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
        pi.queueFamilyIndex = f;
        CHECK(vkCreateCommandPool(dev, &pi, NULL, &pools[f]));
        ts_bits[f] = families[f].timestampValidBits;
    }
    if (has_calibrated) get_calibrated = (PFN_vkGetCalibratedTimestampsEXT)vkGetDeviceProcAddr(dev, "vkGetCalibratedTimestampsEXT");
    has_calibrated = get_calibrated != NULL;

    make_buffer(largest, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0, &local_buf, &local_mem, NULL);
    make_buffer(largest, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &host_buf, &host_mem, &host_map);
    make_buffer(256, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, &marker_buf, &marker_mem, &marker_map);
    VkQueryPoolCreateInfo qp = {VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qp.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qp.queryCount = 4;
    CHECK(vkCreateQueryPool(dev, &qp, NULL, &qpool));
    VkSemaphoreTypeCreateInfo ti = {VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO};
    ti.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
    VkSemaphoreCreateInfo si = {VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    si.pNext = &ti;
    CHECK(vkCreateSemaphore(dev, &si, NULL, &timeline));
    ti.initialValue = 1;
    CHECK(vkCreateSemaphore(dev, &si, NULL, &released));
    VkFenceCreateInfo fi = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    CHECK(vkCreateFence(dev, &fi, NULL, &fence));
    printf("{\"device\": \"%s\", \"driverVersion\": %u, \"apiVersion\": %u, \"synchronization2\": %d, "
           "\"calibratedTimestamps\": %d, \"timestampPeriod\": %g, \"families\": [",
           props.deviceName, props.driverVersion, props.apiVersion, has_sync2, has_calibrated, ts_period);
    for (uint32_t f = 0; f < nfamilies; f++)
        printf("%s{\"flags\": %u, \"queues\": %u}", f ? ", " : "", families[f].queueFlags, families[f].queueCount);
    printf("]}\n");
}

// What one variant records and how it submits and waits.
struct variant {
    const char *name;
    uint32_t family;
    int h2d;
    int barrier;    // 0 none, 1 full (ALL_COMMANDS, MEMORY_WRITE -> ALL_COMMANDS|HOST), 2 TRANSFER_WRITE -> HOST_READ
    int submit2;    // vkQueueSubmit2
    int marker;     // the GPU writes a word into host memory after the copy; the host polls it first
    int timestamps; // timestamps before the copy, after it, and after the barrier (calibrated onto the host clock)
    int empty;      // no copy: an empty command buffer (or none when 2)
    int fence;      // a fence instead of the timeline (polled with vkGetFenceStatus)
    int block;      // vkWaitSemaphores instead of polling
    int waits;      // the submission waits on a second timeline: 1 already at the value it waits for,
                    // 2 signalled by the host (vkSignalSemaphore) right after vkQueueSubmit returns
    int signal_after; // the host signals a second timeline once it saw the copy (a staged release)
    int yield;      // the polling loop calls sched_yield between counter reads
};
static uint64_t released_value = 1;

static void record(VkCommandBuffer cb, const struct variant *v, VkDeviceSize size) {
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    CHECK(vkBeginCommandBuffer(cb, &bi));
    if (v->timestamps) {
        vkCmdResetQueryPool(cb, qpool, 0, 4);
        vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, qpool, 0);
    }
    if (!v->empty) {
        VkBufferCopy region = {0, 0, size};
        vkCmdCopyBuffer(cb, v->h2d ? host_buf : local_buf, v->h2d ? local_buf : host_buf, 1, &region);
    }
    if (v->timestamps) vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, qpool, 1);
    if (v->marker) {
        VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER};
        mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
        mb.dstAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
        vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
        vkCmdFillBuffer(cb, marker_buf, 0, 4, 1);
    }
    if (v->barrier) {
        VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER};
        VkPipelineStageFlags src, dst;
        if (v->barrier == 1) {
            src = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
            dst = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT | VK_PIPELINE_STAGE_HOST_BIT;
            mb.srcAccessMask = VK_ACCESS_MEMORY_WRITE_BIT;
            mb.dstAccessMask = VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_MEMORY_WRITE_BIT | VK_ACCESS_HOST_READ_BIT;
        } else {
            src = VK_PIPELINE_STAGE_TRANSFER_BIT;
            dst = VK_PIPELINE_STAGE_HOST_BIT;
            mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
            mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
        }
        vkCmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
    }
    if (v->timestamps) vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, qpool, 2);
    CHECK(vkEndCommandBuffer(cb));
}

static uint64_t counter(void) {
    uint64_t value;
    CHECK(vkGetSemaphoreCounterValue(dev, timeline, &value));
    return value;
}

// Host CLOCK_MONOTONIC nanoseconds minus GPU timestamp nanoseconds, from one calibration.
static double calibrate(void) {
    VkCalibratedTimestampInfoEXT info[2] = {{VK_STRUCTURE_TYPE_CALIBRATED_TIMESTAMP_INFO_EXT},
                                            {VK_STRUCTURE_TYPE_CALIBRATED_TIMESTAMP_INFO_EXT}};
    info[0].timeDomain = VK_TIME_DOMAIN_DEVICE_EXT;
    info[1].timeDomain = VK_TIME_DOMAIN_CLOCK_MONOTONIC_EXT;
    uint64_t ts[2], deviation;
    CHECK(get_calibrated(dev, 2, info, ts, &deviation));
    return (double)ts[1] - (double)ts[0] * ts_period;
}

static void measure(const struct variant *v, VkDeviceSize size) {
    if (!queues[v->family]) return;
    if (v->submit2 && !has_sync2) return;
    if (v->timestamps && (!has_calibrated || ts_bits[v->family] == 0)) return;
    VkCommandBufferAllocateInfo ai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    ai.commandPool = pools[v->family];
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    VkCommandBuffer cb;
    CHECK(vkAllocateCommandBuffers(dev, &ai, &cb));
    if (v->empty != 2) record(cb, v, size);
    int n = iterations;
    double *total = calloc((size_t)n, sizeof(double)), *submit = calloc((size_t)n, sizeof(double)),
           *wait = calloc((size_t)n, sizeof(double)), *markerSeen = calloc((size_t)n, sizeof(double)),
           *gpuStart = calloc((size_t)n, sizeof(double)), *gpuCopy = calloc((size_t)n, sizeof(double)),
           *gpuBarrier = calloc((size_t)n, sizeof(double)), *gpuEndToSeen = calloc((size_t)n, sizeof(double));
    int ngpu = 0;
    uint32_t fill = 0;
    for (int i = -20; i < n; i++) {
        if (!v->h2d && !v->empty) host_map[0] = 0xffffffffu;
        if (v->marker) marker_map[0] = 0;
        double offset = v->timestamps ? calibrate() : 0;
        uint64_t value = ++timeline_value;
        uint64_t t0 = now_ns();
        if (v->submit2) {
            VkCommandBufferSubmitInfo cbi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_SUBMIT_INFO};
            cbi.commandBuffer = cb;
            VkSemaphoreSubmitInfo ssi = {VK_STRUCTURE_TYPE_SEMAPHORE_SUBMIT_INFO};
            ssi.semaphore = timeline;
            ssi.value = value;
            ssi.stageMask = VK_PIPELINE_STAGE_2_ALL_COMMANDS_BIT;
            VkSubmitInfo2 s2 = {VK_STRUCTURE_TYPE_SUBMIT_INFO_2};
            s2.commandBufferInfoCount = v->empty == 2 ? 0 : 1;
            s2.pCommandBufferInfos = &cbi;
            s2.signalSemaphoreInfoCount = v->fence ? 0 : 1;
            s2.pSignalSemaphoreInfos = &ssi;
            CHECK(vkQueueSubmit2(queues[v->family], 1, &s2, v->fence ? fence : VK_NULL_HANDLE));
        } else {
            VkTimelineSemaphoreSubmitInfo tsi = {VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO};
            tsi.signalSemaphoreValueCount = 1;
            tsi.pSignalSemaphoreValues = &value;
            uint64_t want = v->waits == 2 ? released_value + 1 : released_value;
            VkPipelineStageFlags stage = VK_PIPELINE_STAGE_ALL_COMMANDS_BIT;
            VkSubmitInfo s = {VK_STRUCTURE_TYPE_SUBMIT_INFO};
            if (v->waits) {
                tsi.waitSemaphoreValueCount = 1;
                tsi.pWaitSemaphoreValues = &want;
                s.waitSemaphoreCount = 1;
                s.pWaitSemaphores = &released;
                s.pWaitDstStageMask = &stage;
            }
            s.commandBufferCount = v->empty == 2 ? 0 : 1;
            s.pCommandBuffers = &cb;
            if (!v->fence) {
                s.pNext = &tsi;
                s.signalSemaphoreCount = 1;
                s.pSignalSemaphores = &timeline;
            }
            CHECK(vkQueueSubmit(queues[v->family], 1, &s, v->fence ? fence : VK_NULL_HANDLE));
        }
        uint64_t t1 = now_ns(), tm = 0;
        if (v->waits == 2) {
            VkSemaphoreSignalInfo si = {VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO};
            si.semaphore = released;
            si.value = ++released_value;
            CHECK(vkSignalSemaphore(dev, &si));
        }
        if (v->marker) {
            while (marker_map[0] == 0) {}
            tm = now_ns();
        }
        if (v->fence) {
            VkResult r;
            while ((r = vkGetFenceStatus(dev, fence)) == VK_NOT_READY) {}
            CHECK(r);
        } else if (v->block) {
            VkSemaphoreWaitInfo wi = {VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO};
            wi.semaphoreCount = 1;
            wi.pSemaphores = &timeline;
            wi.pValues = &value;
            CHECK(vkWaitSemaphores(dev, &wi, 10000000000ull));
        } else if (v->yield) {
            while (counter() < value) sched_yield();
        } else {
            while (counter() < value) {}
        }
        uint64_t t2 = now_ns();
        if (v->signal_after) {
            VkSemaphoreSignalInfo si = {VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO};
            si.semaphore = released;
            si.value = ++released_value;
            CHECK(vkSignalSemaphore(dev, &si));
        }
        if (v->fence) { CHECK(vkResetFences(dev, 1, &fence)); timeline_value--; }
        if (!v->h2d && !v->empty) fill = host_map[0];
        if (i < 0) continue;
        total[i] = (t2 - t0) / 1e3;
        submit[i] = (t1 - t0) / 1e3;
        wait[i] = (t2 - t1) / 1e3;
        if (v->marker) markerSeen[i] = (tm - t1) / 1e3;
        if (v->timestamps) {
            uint64_t q[3];
            CHECK(vkGetQueryPoolResults(dev, qpool, 0, 3, sizeof q, q, sizeof q[0], VK_QUERY_RESULT_64_BIT));
            double start = q[0] * ts_period + offset, copied = q[1] * ts_period + offset, end = q[2] * ts_period + offset;
            gpuStart[ngpu] = (start - (double)t1) / 1e3;
            gpuCopy[ngpu] = (copied - start) / 1e3;
            gpuBarrier[ngpu] = (end - copied) / 1e3;
            gpuEndToSeen[ngpu] = ((double)t2 - end) / 1e3;
            ngpu++;
        }
    }
    int ok = v->h2d || v->empty || fill != 0xffffffffu;
    printf("{\"variant\": \"%s\", \"family\": %u, \"size\": %llu, \"iterations\": %d, \"totalMedianUs\": %.2f, "
           "\"submitMedianUs\": %.2f, \"waitMedianUs\": %.2f",
           v->name, v->family, (unsigned long long)size, n, median(total, n), median(submit, n), median(wait, n));
    if (v->marker) printf(", \"markerSeenMedianUs\": %.2f", median(markerSeen, n));
    if (ngpu)
        printf(", \"gpuStartAfterSubmitReturnUs\": %.2f, \"gpuCopyUs\": %.2f, \"gpuBarrierUs\": %.2f, \"gpuEndToHostSeenUs\": %.2f",
               median(gpuStart, ngpu), median(gpuCopy, ngpu), median(gpuBarrier, ngpu), median(gpuEndToSeen, ngpu));
    printf(", \"destinationWritten\": %s}\n", ok ? "true" : "false");
    fflush(stdout);
    free(total); free(submit); free(wait); free(markerSeen); free(gpuStart); free(gpuCopy); free(gpuBarrier); free(gpuEndToSeen);
    vkFreeCommandBuffers(dev, pools[v->family], 1, &cb);
}

// What single host calls cost: a counter read, a host signal, a fence status.
static void call_costs(void) {
    int n = 20000;
    uint64_t t0 = now_ns();
    for (int i = 0; i < n; i++) (void)counter();
    uint64_t t1 = now_ns();
    for (int i = 0; i < n; i++) {
        VkSemaphoreSignalInfo si = {VK_STRUCTURE_TYPE_SEMAPHORE_SIGNAL_INFO};
        si.semaphore = timeline;
        si.value = ++timeline_value;
        CHECK(vkSignalSemaphore(dev, &si));
    }
    uint64_t t2 = now_ns();
    for (int i = 0; i < n; i++) (void)vkGetFenceStatus(dev, fence);
    uint64_t t3 = now_ns();
    printf("{\"calls\": \"host\", \"vkGetSemaphoreCounterValueUs\": %.3f, \"vkSignalSemaphoreUs\": %.3f, \"vkGetFenceStatusUs\": %.3f}\n",
           (t1 - t0) / 1e3 / n, (t2 - t1) / 1e3 / n, (t3 - t2) / 1e3 / n);
    fflush(stdout);
}

// Everything setup made, in reverse (the command buffers went with each variant).
static void teardown(void) {
    vkDestroyFence(dev, fence, NULL);
    vkDestroySemaphore(dev, released, NULL);
    vkDestroySemaphore(dev, timeline, NULL);
    vkDestroyQueryPool(dev, qpool, NULL);
    VkBuffer buffers[] = {marker_buf, host_buf, local_buf};
    VkDeviceMemory memories[] = {marker_mem, host_mem, local_mem};
    for (int i = 0; i < 3; i++) {
        vkDestroyBuffer(dev, buffers[i], NULL);
        vkFreeMemory(dev, memories[i], NULL);  // Unmaps a mapped one.
    }
    for (uint32_t f = 0; f < MAXQ; f++)
        if (pools[f]) vkDestroyCommandPool(dev, pools[f], NULL);
    vkDestroyDevice(dev, NULL);
    vkDestroyInstance(instance, NULL);
}

int main(int argc, char **argv) {
    VkDeviceSize sizes[16] = {4096, 65536, 1048576, 16777216};
    int nsizes = 4;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iterations") && i + 1 < argc) {
            iterations = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *p = strtok(argv[++i], ","); p && nsizes < 16; p = strtok(NULL, ",")) sizes[nsizes++] = strtoull(p, NULL, 0);
        } else {
            fprintf(stderr, "usage: vk_submit_probe [--iterations N] [--sizes A,B,...]\n");
            return 2;
        }
    }
    if (iterations < 1 || nsizes < 1) { fprintf(stderr, "vk_submit_probe: need iterations >= 1 and a size\n"); return 2; }
    VkDeviceSize largest = 4096;
    for (int i = 0; i < nsizes; i++) {
        if (sizes[i] == 0 || sizes[i] % 4) { fprintf(stderr, "vk_submit_probe: sizes must be positive multiples of 4\n"); return 2; }
        if (sizes[i] > largest) largest = sizes[i];
    }
    setup(largest);
    call_costs();
    static const struct variant floor_variants[] = {
        {"no-command-buffer", 0, 0, 0, 0, 0, 0, 2},
        {"empty-command-buffer", 0, 0, 0, 0, 0, 0, 1},
        {"empty-command-buffer-full-barrier", 0, 0, 1, 0, 0, 0, 1},
        {"empty-command-buffer-submit2", 0, 0, 0, 1, 0, 0, 1},
        {"no-command-buffer-fence", 0, 0, 0, 0, 0, 0, 2, 1},
    };
    for (size_t k = 0; k < sizeof floor_variants / sizeof floor_variants[0]; k++) measure(&floor_variants[k], 4096);
    for (int s = 0; s < nsizes; s++) {
        struct variant vs[] = {
            {"full", 0, 0, 1},
            {"copy-to-host", 0, 0, 2},
            {"none", 0, 0, 0},
            {"full-submit2", 0, 0, 1, 1},
            {"copy-to-host-submit2", 0, 0, 2, 1},
            {"copy-to-host-marker", 0, 0, 2, 0, 1},
            {"copy-to-host-timestamps", 0, 0, 2, 0, 0, 1},
            {"full-timestamps", 0, 0, 1, 0, 0, 1},
            {"copy-to-host-fence", 0, 0, 2, 0, 0, 0, 0, 1},
            {"copy-to-host-block", 0, 0, 2, 0, 0, 0, 0, 0, 1},
            {"copy-to-host-waiting", 0, 0, 2, 0, 0, 0, 0, 0, 0, 1},
            {"copy-to-host-waiting-host-signal", 0, 0, 2, 0, 0, 0, 0, 0, 0, 2},
            {"h2d-full-waiting-host-signal", 0, 1, 1, 0, 0, 0, 0, 0, 0, 2},
            {"copy-to-host-then-host-signal", 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1},
            {"copy-to-host-yield", 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1},
            {"h2d-full", 0, 1, 1},
            {"h2d-none", 0, 1, 0},
            {"h2d-full-submit2", 0, 1, 1, 1},
        };
        for (size_t k = 0; k < sizeof vs / sizeof vs[0]; k++) measure(&vs[k], sizes[s]);
        // The same on every other queue family that can copy.
        for (uint32_t f = 1; f < nfamilies; f++) {
            struct variant fv[] = {{"family-copy-to-host", f, 0, 2}, {"family-full", f, 0, 1}, {"family-h2d-full", f, 1, 1}};
            for (size_t k = 0; k < 3; k++) measure(&fv[k], sizes[s]);
        }
    }
    CHECK(vkDeviceWaitIdle(dev));
    teardown();
    return 0;
}
