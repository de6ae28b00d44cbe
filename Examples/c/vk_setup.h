/*
 * Examples/c/vk_setup.h: the application's own Vulkan objects, made with the plain Vulkan C
 * API (an instance, the first physical device with a compute queue, a device with the
 * extensions libvkverbs asks for). Shared by the C examples; the C++ example has its own.
 */
#ifndef VKV_EXAMPLE_VK_SETUP_H
#define VKV_EXAMPLE_VK_SETUP_H

#include <stdio.h>
#include <string.h>
#include <vulkan/vulkan.h>
#include <vkverbs.h>

#define VK_SETUP_MAX_EXTENSIONS 16

struct vk_setup {
    VkInstance instance;
    VkPhysicalDevice physical_device;
    VkDevice device;
    uint32_t queue_family;
    const char *extensions[VK_SETUP_MAX_EXTENSIONS];
    uint32_t extension_count;
    uint32_t vkv_flags; /* VKV_VULKAN_EXTERNAL_MEMORY_RDMA when that feature was enabled */
    char device_name[VK_MAX_PHYSICAL_DEVICE_NAME_SIZE];
};

static inline void vk_setup_destroy(struct vk_setup *vk) {
    if (vk->device) vkDestroyDevice(vk->device, NULL);
    if (vk->instance) vkDestroyInstance(vk->instance, NULL);
    vk->device = NULL;
    vk->instance = NULL;
}

/* Returns 0 on success; prints why and returns 1 otherwise. With timeline set, the instance is
 * Vulkan 1.2 and the device has the timelineSemaphore feature (for a frame stream's timeline). */
static inline int vk_setup_create_with(struct vk_setup *vk, const char *app_name, int timeline) {
    memset(vk, 0, sizeof *vk);
    VkApplicationInfo app;
    memset(&app, 0, sizeof app);
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.pApplicationName = app_name;
    app.apiVersion = timeline ? VK_API_VERSION_1_2 : VK_API_VERSION_1_1;
    VkInstanceCreateInfo ici;
    memset(&ici, 0, sizeof ici);
    ici.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ici.pApplicationInfo = &app;
    VkResult r = vkCreateInstance(&ici, NULL, &vk->instance);
    if (r != VK_SUCCESS) {
        fprintf(stderr, "%s: vkCreateInstance failed (%d)\n", app_name, (int)r);
        return 1;
    }
    uint32_t n = 0;
    VkPhysicalDevice devices[8];
    vkEnumeratePhysicalDevices(vk->instance, &n, NULL);
    if (n > 8) n = 8;
    r = vkEnumeratePhysicalDevices(vk->instance, &n, devices);
    if (r < 0 || n == 0) {
        fprintf(stderr, "%s: no Vulkan physical device\n", app_name);
        vk_setup_destroy(vk);
        return 1;
    }
    for (uint32_t d = 0; d < n && !vk->physical_device; d++) {
        uint32_t families = 0;
        VkQueueFamilyProperties props[16];
        vkGetPhysicalDeviceQueueFamilyProperties(devices[d], &families, NULL);
        if (families > 16) families = 16;
        vkGetPhysicalDeviceQueueFamilyProperties(devices[d], &families, props);
        for (uint32_t f = 0; f < families; f++) {
            if (props[f].queueFlags & VK_QUEUE_COMPUTE_BIT) {
                vk->physical_device = devices[d];
                vk->queue_family = f;
                break;
            }
        }
    }
    if (!vk->physical_device) {
        fprintf(stderr, "%s: no physical device with a compute queue\n", app_name);
        vk_setup_destroy(vk);
        return 1;
    }
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(vk->physical_device, &props);
    memcpy(vk->device_name, props.deviceName, sizeof vk->device_name);

    /* Ask the library which device extensions it can use on this device. */
    vk->extension_count = VK_SETUP_MAX_EXTENSIONS;
    vkv_status s = vkv_vulkan_required_device_extensions(vk->physical_device, vk->extensions, &vk->extension_count);
    if (s != VKV_OK) {
        fprintf(stderr, "%s: vkv_vulkan_required_device_extensions: %s: %s\n", app_name, vkv_status_string(s),
                vkv_last_error_message());
        vk_setup_destroy(vk);
        return 1;
    }
    /* VK_NV_external_memory_rdma needs its feature enabled, too. */
    VkPhysicalDeviceExternalMemoryRDMAFeaturesNV rdma;
    memset(&rdma, 0, sizeof rdma);
    rdma.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV;
    int wants_rdma = 0;
    for (uint32_t i = 0; i < vk->extension_count; i++)
        if (strcmp(vk->extensions[i], "VK_NV_external_memory_rdma") == 0) wants_rdma = 1;
    if (wants_rdma) {
        VkPhysicalDeviceFeatures2 features;
        memset(&features, 0, sizeof features);
        features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
        features.pNext = &rdma;
        vkGetPhysicalDeviceFeatures2(vk->physical_device, &features);
        rdma.pNext = NULL;
        if (rdma.externalMemoryRDMA) vk->vkv_flags |= VKV_VULKAN_EXTERNAL_MEMORY_RDMA;
    }
    float priority = 1.0f;
    VkDeviceQueueCreateInfo qci;
    memset(&qci, 0, sizeof qci);
    qci.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qci.queueFamilyIndex = vk->queue_family;
    qci.queueCount = 1;
    qci.pQueuePriorities = &priority;
    VkDeviceCreateInfo dci;
    memset(&dci, 0, sizeof dci);
    dci.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    dci.pNext = (vk->vkv_flags & VKV_VULKAN_EXTERNAL_MEMORY_RDMA) ? &rdma : NULL;
    VkPhysicalDeviceTimelineSemaphoreFeatures timeline_features;
    memset(&timeline_features, 0, sizeof timeline_features);
    timeline_features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_TIMELINE_SEMAPHORE_FEATURES;
    if (timeline) {
        timeline_features.timelineSemaphore = VK_TRUE;
        timeline_features.pNext = (void *)dci.pNext;
        dci.pNext = &timeline_features;
    }
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    dci.enabledExtensionCount = vk->extension_count;
    dci.ppEnabledExtensionNames = vk->extensions;
    r = vkCreateDevice(vk->physical_device, &dci, NULL, &vk->device);
    if (r != VK_SUCCESS) {
        fprintf(stderr, "%s: vkCreateDevice failed (%d)\n", app_name, (int)r);
        vk_setup_destroy(vk);
        return 1;
    }
    return 0;
}

static inline int vk_setup_create(struct vk_setup *vk, const char *app_name) {
    return vk_setup_create_with(vk, app_name, 0);
}

/* Wraps the objects for libvkverbs. */
static inline vkv_status vk_setup_open(const struct vk_setup *vk, vkv_vulkan **out) {
    return vkv_vulkan_open(vk->instance, VK_API_VERSION_1_1, vk->physical_device, vk->device, vk->queue_family,
                           vk->extensions, vk->extension_count, vk->vkv_flags, out);
}

#endif
