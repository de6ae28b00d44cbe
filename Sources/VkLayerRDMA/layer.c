/*
 * VK_LAYER_VKVERBS_rdma_emulation: VK_NV_external_memory_rdma on top of any driver (C99).
 *
 * Physical-device queries: the extension is appended to the driver's list, the externalMemoryRDMA
 * feature reads VK_TRUE, HOST_VISIBLE|HOST_COHERENT memory types (system memory first: see
 * mark_rdma_capable) gain RDMA_CAPABLE_BIT_NV and the
 * RDMA-address handle type is exportable for buffers. On a device created with the extension, the
 * NV structures and handle-type bits are removed before the driver sees them, and
 * vkGetMemoryRemoteAddressNV returns a persistent host mapping of the allocation (the layer maps it
 * once and unmaps it when the memory is freed; the application's own vkMapMemory/vkUnmapMemory of
 * such memory are served from that mapping). A driver that has the extension itself, and a device
 * created without it, are passed through untouched. The application's structures are never
 * modified: chains are copied (struct_sizes.h gives the sizes) with the NV parts left out.
 */
#include "vkverbs_rdma_layer.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define LAYER_EXPORT __attribute__((visibility("default")))
#else
#define LAYER_EXPORT
#endif

#define RDMA_HANDLE_BIT VK_EXTERNAL_MEMORY_HANDLE_TYPE_RDMA_ADDRESS_BIT_NV
#define HOST_COHERENT_FLAGS (VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)

/* ---------------------------------------------------------------------------------------------- */
/* Bookkeeping: instances, physical devices, devices and RDMA-exportable memories, under one lock. */

typedef struct instance_data {
    struct instance_data *next;
    void *key; /* the loader's dispatch pointer, shared by the instance and its physical devices */
    VkInstance instance;
    PFN_vkGetInstanceProcAddr next_gipa;
    PFN_vkDestroyInstance DestroyInstance;
    PFN_vkEnumerateDeviceExtensionProperties EnumerateDeviceExtensionProperties;
    PFN_vkGetPhysicalDeviceFeatures2 GetPhysicalDeviceFeatures2;
    PFN_vkGetPhysicalDeviceFeatures2 GetPhysicalDeviceFeatures2KHR;
    PFN_vkGetPhysicalDeviceMemoryProperties GetPhysicalDeviceMemoryProperties;
    PFN_vkGetPhysicalDeviceMemoryProperties2 GetPhysicalDeviceMemoryProperties2;
    PFN_vkGetPhysicalDeviceMemoryProperties2 GetPhysicalDeviceMemoryProperties2KHR;
    PFN_vkGetPhysicalDeviceExternalBufferProperties GetPhysicalDeviceExternalBufferProperties;
    PFN_vkGetPhysicalDeviceExternalBufferProperties GetPhysicalDeviceExternalBufferPropertiesKHR;
    PFN_vkGetPhysicalDeviceImageFormatProperties2 GetPhysicalDeviceImageFormatProperties2;
    PFN_vkGetPhysicalDeviceImageFormatProperties2 GetPhysicalDeviceImageFormatProperties2KHR;
} instance_data;

/* Whether the driver under the layer lists the extension itself (then the layer stays out of the way). */
typedef struct physical_data {
    struct physical_data *next;
    VkPhysicalDevice physical;
    void *instance_key;
    int driver_has_extension;
} physical_data;

typedef struct memory_data {
    struct memory_data *next;
    VkDeviceMemory memory;
    void *mapping;   /* the layer's persistent vkMapMemory of the whole allocation, or NULL */
    int app_mapped;  /* the application holds a vkMapMemory of it (served from `mapping`) */
} memory_data;

typedef struct device_data {
    struct device_data *next;
    void *key;
    VkDevice device;
    VkPhysicalDevice physical;
    int emulating; /* created with the extension, which the driver lacks */
    int rdma_feature;
    VkPhysicalDeviceMemoryProperties memory_properties; /* the driver's, without the layer's bit */
    memory_data *memories;
    PFN_vkGetDeviceProcAddr next_gdpa;
    PFN_vkDestroyDevice DestroyDevice;
    PFN_vkCreateBuffer CreateBuffer;
    PFN_vkAllocateMemory AllocateMemory;
    PFN_vkFreeMemory FreeMemory;
    PFN_vkMapMemory MapMemory;
    PFN_vkUnmapMemory UnmapMemory;
#if defined(VK_KHR_map_memory2)
    PFN_vkMapMemory2KHR MapMemory2KHR;
    PFN_vkUnmapMemory2KHR UnmapMemory2KHR;
#endif
#if defined(VK_VERSION_1_4)
    PFN_vkMapMemory2 MapMemory2;
    PFN_vkUnmapMemory2 UnmapMemory2;
#endif
    PFN_vkGetMemoryRemoteAddressNV GetMemoryRemoteAddressNV; /* the driver's, when it has the extension */
} device_data;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static instance_data *instances;
static physical_data *physicals;
static device_data *devices;

static void *dispatch_key(const void *handle) { return *(void *const *)handle; }

static int debug_enabled(void) {
    const char *value = getenv("VKVERBS_RDMA_LAYER_DEBUG");
    return value != NULL && strcmp(value, "1") == 0;
}

static void note(const char *what) {
    if (debug_enabled()) fprintf(stderr, "[%s] %s\n", VKVERBS_RDMA_LAYER_NAME, what);
}

static instance_data *find_instance(void *key) {
    instance_data *found;
    pthread_mutex_lock(&lock);
    for (found = instances; found != NULL && found->key != key; found = found->next) {
    }
    pthread_mutex_unlock(&lock);
    return found;
}

static device_data *find_device(void *key) {
    device_data *found;
    pthread_mutex_lock(&lock);
    for (found = devices; found != NULL && found->key != key; found = found->next) {
    }
    pthread_mutex_unlock(&lock);
    return found;
}

/* Caller holds the lock. */
static memory_data *find_memory(device_data *dev, VkDeviceMemory memory) {
    memory_data *found;
    for (found = dev->memories; found != NULL && found->memory != memory; found = found->next) {
    }
    return found;
}

/* ---------------------------------------------------------------------------------------------- */
/* pNext chains */

typedef struct struct_size {
    VkStructureType sType;
    size_t size;
} struct_size;

static const struct_size struct_sizes[] = {
    {VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO, sizeof(VkLayerInstanceCreateInfo)},
    {VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO, sizeof(VkLayerDeviceCreateInfo)},
#include "struct_sizes.h"
};

static size_t size_of_struct(VkStructureType type) {
    size_t i;
    for (i = 0; i < sizeof(struct_sizes) / sizeof(struct_sizes[0]); i++) {
        if (struct_sizes[i].sType == type) return struct_sizes[i].size;
    }
    return 0;
}

static const VkBaseInStructure *find_in_chain(const void *head, VkStructureType type) {
    const VkBaseInStructure *p;
    for (p = (const VkBaseInStructure *)head; p != NULL; p = p->pNext) {
        if (p->sType == type) return p;
    }
    return NULL;
}

/* Copies made for one call, freed after it. */
typedef struct scratch {
    void *blocks[64];
    int count;
} scratch;

static void *scratch_alloc(scratch *s, size_t size) {
    void *block;
    if (s->count == (int)(sizeof(s->blocks) / sizeof(s->blocks[0]))) return NULL;
    block = malloc(size);
    if (block != NULL) s->blocks[s->count++] = block;
    return block;
}

static void scratch_free(scratch *s) {
    while (s->count > 0) free(s->blocks[--s->count]);
}

/*
 * A chain equal to `head` with the structure of type `type` replaced by `with` (left out when `with`
 * is NULL). The structures before it are copied, the rest is shared; nothing of the application's
 * is modified. Returns 0 when a structure that would have to be copied is of a type this build does
 * not know the size of (newer than its headers), or on allocation failure.
 */
static int chain_replace(const void *head, VkStructureType type, VkBaseOutStructure *with, scratch *s,
                         const void **out) {
    const VkBaseInStructure *target = find_in_chain(head, type);
    const VkBaseInStructure *p;
    VkBaseOutStructure *first = NULL, *prev = NULL, *end;
    if (target == NULL) {
        *out = head;
        return 1;
    }
    for (p = (const VkBaseInStructure *)head; p != target; p = p->pNext) {
        size_t size = size_of_struct(p->sType);
        VkBaseOutStructure *copy;
        if (size == 0) return 0;
        copy = (VkBaseOutStructure *)scratch_alloc(s, size);
        if (copy == NULL) return 0;
        memcpy(copy, p, size);
        if (prev != NULL) prev->pNext = copy; else first = copy;
        prev = copy;
    }
    if (with != NULL) {
        with->pNext = (VkBaseOutStructure *)target->pNext;
        end = with;
    } else {
        end = (VkBaseOutStructure *)target->pNext;
    }
    if (prev != NULL) prev->pNext = end; else first = end;
    *out = first;
    return 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* Physical-device level */

static int driver_has_extension(instance_data *inst, VkPhysicalDevice physical) {
    physical_data *entry;
    uint32_t count = 0, i;
    VkExtensionProperties *props;
    int has = 0;
    pthread_mutex_lock(&lock);
    for (entry = physicals; entry != NULL && entry->physical != physical; entry = entry->next) {
    }
    pthread_mutex_unlock(&lock);
    if (entry != NULL) return entry->driver_has_extension;

    if (inst->EnumerateDeviceExtensionProperties(physical, NULL, &count, NULL) != VK_SUCCESS) return 0;
    props = (VkExtensionProperties *)calloc(count ? count : 1, sizeof(*props));
    if (props == NULL) return 0;
    if (inst->EnumerateDeviceExtensionProperties(physical, NULL, &count, props) >= 0) {
        for (i = 0; i < count; i++) {
            if (strcmp(props[i].extensionName, VK_NV_EXTERNAL_MEMORY_RDMA_EXTENSION_NAME) == 0) has = 1;
        }
    }
    free(props);

    entry = (physical_data *)calloc(1, sizeof(*entry));
    if (entry != NULL) {
        entry->physical = physical;
        entry->instance_key = inst->key;
        entry->driver_has_extension = has;
        pthread_mutex_lock(&lock);
        entry->next = physicals;
        physicals = entry;
        pthread_mutex_unlock(&lock);
    }
    return has;
}

/* The instance of a physical device, and whether the layer provides the extension on it. */
static instance_data *physical_instance(VkPhysicalDevice physical, int *emulating) {
    instance_data *inst = find_instance(dispatch_key(physical));
    if (emulating != NULL) *emulating = inst != NULL && !driver_has_extension(inst, physical);
    return inst;
}

static VkResult fill_extension_list(const VkExtensionProperties *list, uint32_t total, uint32_t *pCount,
                                    VkExtensionProperties *pProperties) {
    uint32_t n;
    if (pProperties == NULL) {
        *pCount = total;
        return VK_SUCCESS;
    }
    n = *pCount < total ? *pCount : total;
    if (n > 0) memcpy(pProperties, list, n * sizeof(*list));
    *pCount = n;
    return n < total ? VK_INCOMPLETE : VK_SUCCESS;
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_EnumerateDeviceExtensionProperties(VkPhysicalDevice physical,
                                                                              const char *pLayerName,
                                                                              uint32_t *pCount,
                                                                              VkExtensionProperties *pProperties) {
    int emulating = 0;
    instance_data *inst = physical_instance(physical, &emulating);
    VkExtensionProperties ours;
    VkExtensionProperties *all;
    uint32_t count = 0;
    VkResult result;

    memset(&ours, 0, sizeof(ours));
    strncpy(ours.extensionName, VK_NV_EXTERNAL_MEMORY_RDMA_EXTENSION_NAME, VK_MAX_EXTENSION_NAME_SIZE - 1);
    ours.specVersion = VK_NV_EXTERNAL_MEMORY_RDMA_SPEC_VERSION;

    if (pLayerName != NULL && strcmp(pLayerName, VKVERBS_RDMA_LAYER_NAME) == 0) {
        /* What this layer itself provides on this device: the extension, unless the driver has it. */
        return fill_extension_list(&ours, emulating ? 1 : 0, pCount, pProperties);
    }
    if (inst == NULL) return VK_ERROR_INITIALIZATION_FAILED;
    if (pLayerName != NULL || !emulating) {
        return inst->EnumerateDeviceExtensionProperties(physical, pLayerName, pCount, pProperties);
    }
    /* The driver's list plus the extension. */
    for (;;) {
        result = inst->EnumerateDeviceExtensionProperties(physical, NULL, &count, NULL);
        if (result != VK_SUCCESS) return result;
        all = (VkExtensionProperties *)calloc(count + 1, sizeof(*all));
        if (all == NULL) return VK_ERROR_OUT_OF_HOST_MEMORY;
        result = inst->EnumerateDeviceExtensionProperties(physical, NULL, &count, all);
        if (result != VK_INCOMPLETE) break;
        free(all); /* the list grew between the two calls */
    }
    if (result != VK_SUCCESS) {
        free(all);
        return result;
    }
    all[count] = ours;
    result = fill_extension_list(all, count + 1, pCount, pProperties);
    free(all);
    return result;
}

/* Calls `down` with every VkPhysicalDeviceExternalMemoryRDMAFeaturesNV unlinked from the
 * application's output chain (put back afterwards), then reports the feature. */
static void features2(VkPhysicalDevice physical, VkPhysicalDeviceFeatures2 *pFeatures,
                      PFN_vkGetPhysicalDeviceFeatures2 down) {
    VkBaseOutStructure *removed[8];
    VkBaseOutStructure **links[8];
    VkBaseOutStructure **link;
    int n = 0, i;
    for (link = &((VkBaseOutStructure *)pFeatures)->pNext; *link != NULL;) {
        if ((*link)->sType == VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV && n < 8) {
            removed[n] = *link;
            links[n] = link;
            *link = (*link)->pNext;
            n++;
        } else {
            link = &(*link)->pNext;
        }
    }
    down(physical, pFeatures);
    for (i = n - 1; i >= 0; i--) {
        *links[i] = removed[i];
        ((VkPhysicalDeviceExternalMemoryRDMAFeaturesNV *)removed[i])->externalMemoryRDMA = VK_TRUE;
    }
}

static VKAPI_ATTR void VKAPI_CALL layer_GetPhysicalDeviceFeatures2(VkPhysicalDevice physical,
                                                                  VkPhysicalDeviceFeatures2 *pFeatures) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    if (emulating) features2(physical, pFeatures, inst->GetPhysicalDeviceFeatures2);
    else inst->GetPhysicalDeviceFeatures2(physical, pFeatures);
}

static VKAPI_ATTR void VKAPI_CALL layer_GetPhysicalDeviceFeatures2KHR(VkPhysicalDevice physical,
                                                                     VkPhysicalDeviceFeatures2 *pFeatures) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    if (emulating) features2(physical, pFeatures, inst->GetPhysicalDeviceFeatures2KHR);
    else inst->GetPhysicalDeviceFeatures2KHR(physical, pFeatures);
}

/* The NIC registers the layer's host mapping with ibv_reg_mr, which pins system pages; a
 * device-local host-visible type is a BAR mapping that only a GPU peer-memory client could
 * register. So a type is RDMA-capable when it is host-coherent and, if the device has any
 * host-coherent system-memory type (discrete GPUs), not device-local. On UMA devices all memory
 * is system memory and every host-coherent type qualifies. The driver's (unmarked) properties in. */
static int is_rdma_capable_type(const VkPhysicalDeviceMemoryProperties *props, uint32_t type) {
    uint32_t i;
    VkMemoryPropertyFlags f;
    int have_system = 0;
    if (type >= props->memoryTypeCount) return 0;
    for (i = 0; i < props->memoryTypeCount; i++) {
        f = props->memoryTypes[i].propertyFlags;
        if ((f & HOST_COHERENT_FLAGS) == HOST_COHERENT_FLAGS && !(f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)) have_system = 1;
    }
    f = props->memoryTypes[type].propertyFlags;
    if ((f & HOST_COHERENT_FLAGS) != HOST_COHERENT_FLAGS) return 0;
    return !(have_system && (f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT));
}

static void mark_rdma_capable(VkPhysicalDeviceMemoryProperties *props) {
    uint32_t i;
    int capable[VK_MAX_MEMORY_TYPES];
    for (i = 0; i < props->memoryTypeCount; i++) capable[i] = is_rdma_capable_type(props, i);
    for (i = 0; i < props->memoryTypeCount; i++) {
        if (capable[i]) props->memoryTypes[i].propertyFlags |= VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV;
    }
}

static VKAPI_ATTR void VKAPI_CALL layer_GetPhysicalDeviceMemoryProperties(VkPhysicalDevice physical,
                                                                         VkPhysicalDeviceMemoryProperties *props) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    inst->GetPhysicalDeviceMemoryProperties(physical, props);
    if (emulating) mark_rdma_capable(props);
}

static VKAPI_ATTR void VKAPI_CALL layer_GetPhysicalDeviceMemoryProperties2(VkPhysicalDevice physical,
                                                                          VkPhysicalDeviceMemoryProperties2 *props) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    inst->GetPhysicalDeviceMemoryProperties2(physical, props);
    if (emulating) mark_rdma_capable(&props->memoryProperties);
}

static VKAPI_ATTR void VKAPI_CALL layer_GetPhysicalDeviceMemoryProperties2KHR(VkPhysicalDevice physical,
                                                                             VkPhysicalDeviceMemoryProperties2 *props) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    inst->GetPhysicalDeviceMemoryProperties2KHR(physical, props);
    if (emulating) mark_rdma_capable(&props->memoryProperties);
}

/* The RDMA-address type is answered here: exportable (not importable) for any non-sparse buffer. */
static int answer_external_buffer(const VkPhysicalDeviceExternalBufferInfo *info, VkExternalBufferProperties *props) {
    const VkBufferCreateFlags sparse = VK_BUFFER_CREATE_SPARSE_BINDING_BIT | VK_BUFFER_CREATE_SPARSE_RESIDENCY_BIT |
                                       VK_BUFFER_CREATE_SPARSE_ALIASED_BIT;
    VkExternalMemoryProperties *memory = &props->externalMemoryProperties;
    if (info->handleType != RDMA_HANDLE_BIT) return 0;
    memory->exportFromImportedHandleTypes = 0;
    if (info->flags & sparse) {
        memory->externalMemoryFeatures = 0;
        memory->compatibleHandleTypes = 0;
    } else {
        memory->externalMemoryFeatures = VK_EXTERNAL_MEMORY_FEATURE_EXPORTABLE_BIT;
        memory->compatibleHandleTypes = RDMA_HANDLE_BIT;
    }
    return 1;
}

static VKAPI_ATTR void VKAPI_CALL layer_GetPhysicalDeviceExternalBufferProperties(
    VkPhysicalDevice physical, const VkPhysicalDeviceExternalBufferInfo *info, VkExternalBufferProperties *props) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    if (emulating && answer_external_buffer(info, props)) return;
    inst->GetPhysicalDeviceExternalBufferProperties(physical, info, props);
}

static VKAPI_ATTR void VKAPI_CALL layer_GetPhysicalDeviceExternalBufferPropertiesKHR(
    VkPhysicalDevice physical, const VkPhysicalDeviceExternalBufferInfo *info, VkExternalBufferProperties *props) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    if (emulating && answer_external_buffer(info, props)) return;
    inst->GetPhysicalDeviceExternalBufferPropertiesKHR(physical, info, props);
}

/* Images cannot be exported as RDMA addresses through this layer. */
static int rdma_image_query(const VkPhysicalDeviceImageFormatInfo2 *info) {
    const VkPhysicalDeviceExternalImageFormatInfo *external = (const VkPhysicalDeviceExternalImageFormatInfo *)
        find_in_chain(info->pNext, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_IMAGE_FORMAT_INFO);
    return external != NULL && external->handleType == RDMA_HANDLE_BIT;
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_GetPhysicalDeviceImageFormatProperties2(
    VkPhysicalDevice physical, const VkPhysicalDeviceImageFormatInfo2 *info, VkImageFormatProperties2 *props) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    if (emulating && rdma_image_query(info)) return VK_ERROR_FORMAT_NOT_SUPPORTED;
    return inst->GetPhysicalDeviceImageFormatProperties2(physical, info, props);
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_GetPhysicalDeviceImageFormatProperties2KHR(
    VkPhysicalDevice physical, const VkPhysicalDeviceImageFormatInfo2 *info, VkImageFormatProperties2 *props) {
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    if (emulating && rdma_image_query(info)) return VK_ERROR_FORMAT_NOT_SUPPORTED;
    return inst->GetPhysicalDeviceImageFormatProperties2KHR(physical, info, props);
}

/* ---------------------------------------------------------------------------------------------- */
/* Device level (installed only on devices created with the extension the driver lacks) */

static VKAPI_ATTR VkResult VKAPI_CALL layer_CreateBuffer(VkDevice device, const VkBufferCreateInfo *pCreateInfo,
                                                        const VkAllocationCallbacks *pAllocator, VkBuffer *pBuffer) {
    device_data *dev = find_device(dispatch_key(device));
    const VkExternalMemoryBufferCreateInfo *external;
    VkExternalMemoryBufferCreateInfo stripped;
    VkBufferCreateInfo info;
    scratch s;
    VkResult result;
    external = (const VkExternalMemoryBufferCreateInfo *)find_in_chain(
        pCreateInfo->pNext, VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO);
    if (!dev->emulating || external == NULL || !(external->handleTypes & RDMA_HANDLE_BIT)) {
        return dev->CreateBuffer(device, pCreateInfo, pAllocator, pBuffer);
    }
    stripped = *external;
    stripped.handleTypes &= ~(VkExternalMemoryHandleTypeFlags)RDMA_HANDLE_BIT;
    info = *pCreateInfo;
    s.count = 0;
    if (!chain_replace(pCreateInfo->pNext, VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO,
                       stripped.handleTypes ? (VkBaseOutStructure *)&stripped : NULL, &s, &info.pNext)) {
        scratch_free(&s);
        note("vkCreateBuffer: cannot copy the pNext chain (a structure newer than this build)");
        return VK_ERROR_OUT_OF_HOST_MEMORY;
    }
    result = dev->CreateBuffer(device, &info, pAllocator, pBuffer);
    scratch_free(&s);
    return result;
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_AllocateMemory(VkDevice device, const VkMemoryAllocateInfo *pAllocateInfo,
                                                          const VkAllocationCallbacks *pAllocator,
                                                          VkDeviceMemory *pMemory) {
    device_data *dev = find_device(dispatch_key(device));
    const VkExportMemoryAllocateInfo *export_info;
    VkExportMemoryAllocateInfo stripped;
    VkMemoryAllocateInfo info;
    memory_data *entry;
    uint32_t type = pAllocateInfo->memoryTypeIndex;
    scratch s;
    VkResult result;
    export_info = (const VkExportMemoryAllocateInfo *)find_in_chain(pAllocateInfo->pNext,
                                                                    VK_STRUCTURE_TYPE_EXPORT_MEMORY_ALLOCATE_INFO);
    if (!dev->emulating || export_info == NULL || !(export_info->handleTypes & RDMA_HANDLE_BIT)) {
        return dev->AllocateMemory(device, pAllocateInfo, pAllocator, pMemory);
    }
    /* Only the types the layer marked RDMA_CAPABLE_BIT_NV can be exported as RDMA addresses. */
    if (!is_rdma_capable_type(&dev->memory_properties, type)) return VK_ERROR_INVALID_EXTERNAL_HANDLE;
    entry = (memory_data *)calloc(1, sizeof(*entry));
    if (entry == NULL) return VK_ERROR_OUT_OF_HOST_MEMORY;
    stripped = *export_info;
    stripped.handleTypes &= ~(VkExternalMemoryHandleTypeFlags)RDMA_HANDLE_BIT;
    info = *pAllocateInfo;
    s.count = 0;
    if (!chain_replace(pAllocateInfo->pNext, VK_STRUCTURE_TYPE_EXPORT_MEMORY_ALLOCATE_INFO,
                       stripped.handleTypes ? (VkBaseOutStructure *)&stripped : NULL, &s, &info.pNext)) {
        scratch_free(&s);
        free(entry);
        note("vkAllocateMemory: cannot copy the pNext chain (a structure newer than this build)");
        return VK_ERROR_OUT_OF_HOST_MEMORY;
    }
    result = dev->AllocateMemory(device, &info, pAllocator, pMemory);
    scratch_free(&s);
    if (result != VK_SUCCESS) {
        free(entry);
        return result;
    }
    entry->memory = *pMemory;
    pthread_mutex_lock(&lock);
    entry->next = dev->memories;
    dev->memories = entry;
    pthread_mutex_unlock(&lock);
    return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL layer_FreeMemory(VkDevice device, VkDeviceMemory memory,
                                                  const VkAllocationCallbacks *pAllocator) {
    device_data *dev = find_device(dispatch_key(device));
    memory_data **link, *entry = NULL;
    if (memory != VK_NULL_HANDLE) {
        pthread_mutex_lock(&lock);
        for (link = &dev->memories; *link != NULL; link = &(*link)->next) {
            if ((*link)->memory == memory) {
                entry = *link;
                *link = entry->next;
                break;
            }
        }
        pthread_mutex_unlock(&lock);
    }
    if (entry != NULL) {
        if (entry->mapping != NULL) dev->UnmapMemory(device, memory);
        free(entry);
    }
    dev->FreeMemory(device, memory, pAllocator);
}

/* Maps an RDMA-exportable memory once, for good. Caller holds the lock. */
static VkResult persistent_mapping(device_data *dev, memory_data *entry) {
    if (entry->mapping != NULL) return VK_SUCCESS;
    return dev->MapMemory(dev->device, entry->memory, 0, VK_WHOLE_SIZE, 0, &entry->mapping);
}

/* The application's mapping of an RDMA-exportable memory: the layer's mapping at `offset`. */
static VkResult app_map(device_data *dev, memory_data *entry, VkDeviceSize offset, void **ppData) {
    VkResult result;
    if (entry->app_mapped) return VK_ERROR_MEMORY_MAP_FAILED; /* mapped twice: invalid usage */
    result = persistent_mapping(dev, entry);
    if (result != VK_SUCCESS) return result;
    entry->app_mapped = 1;
    *ppData = (char *)entry->mapping + offset;
    return VK_SUCCESS;
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_MapMemory(VkDevice device, VkDeviceMemory memory, VkDeviceSize offset,
                                                     VkDeviceSize size, VkMemoryMapFlags flags, void **ppData) {
    device_data *dev = find_device(dispatch_key(device));
    memory_data *entry;
    VkResult result;
    pthread_mutex_lock(&lock);
    entry = find_memory(dev, memory);
    if (entry != NULL) result = app_map(dev, entry, offset, ppData);
    pthread_mutex_unlock(&lock);
    if (entry != NULL) return result;
    return dev->MapMemory(device, memory, offset, size, flags, ppData);
}

static VKAPI_ATTR void VKAPI_CALL layer_UnmapMemory(VkDevice device, VkDeviceMemory memory) {
    device_data *dev = find_device(dispatch_key(device));
    memory_data *entry;
    pthread_mutex_lock(&lock);
    entry = find_memory(dev, memory);
    if (entry != NULL) entry->app_mapped = 0; /* the layer keeps its mapping until vkFreeMemory */
    pthread_mutex_unlock(&lock);
    if (entry == NULL) dev->UnmapMemory(device, memory);
}

#if defined(VK_KHR_map_memory2) || defined(VK_VERSION_1_4)
/* vkMapMemory2(KHR) / vkUnmapMemory2(KHR): the same, given the function to pass other memory to. */
static VkResult map2(VkDevice device, const VkMemoryMapInfoKHR *pMemoryMapInfo, void **ppData,
                     PFN_vkMapMemory2KHR down) {
    device_data *dev = find_device(dispatch_key(device));
    memory_data *entry;
    VkResult result = VK_ERROR_MEMORY_MAP_FAILED;
    pthread_mutex_lock(&lock);
    entry = find_memory(dev, pMemoryMapInfo->memory);
    if (entry != NULL) result = app_map(dev, entry, pMemoryMapInfo->offset, ppData);
    pthread_mutex_unlock(&lock);
    if (entry != NULL) return result;
    return down(device, pMemoryMapInfo, ppData);
}

static VkResult unmap2(VkDevice device, const VkMemoryUnmapInfoKHR *pMemoryUnmapInfo, PFN_vkUnmapMemory2KHR down) {
    device_data *dev = find_device(dispatch_key(device));
    memory_data *entry;
    pthread_mutex_lock(&lock);
    entry = find_memory(dev, pMemoryUnmapInfo->memory);
    if (entry != NULL) entry->app_mapped = 0;
    pthread_mutex_unlock(&lock);
    if (entry != NULL) return VK_SUCCESS;
    return down(device, pMemoryUnmapInfo);
}
#endif

#if defined(VK_KHR_map_memory2)
static VKAPI_ATTR VkResult VKAPI_CALL layer_MapMemory2KHR(VkDevice device, const VkMemoryMapInfoKHR *pMemoryMapInfo,
                                                         void **ppData) {
    return map2(device, pMemoryMapInfo, ppData, find_device(dispatch_key(device))->MapMemory2KHR);
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_UnmapMemory2KHR(VkDevice device,
                                                           const VkMemoryUnmapInfoKHR *pMemoryUnmapInfo) {
    return unmap2(device, pMemoryUnmapInfo, find_device(dispatch_key(device))->UnmapMemory2KHR);
}
#endif

#if defined(VK_VERSION_1_4)
static VKAPI_ATTR VkResult VKAPI_CALL layer_MapMemory2(VkDevice device, const VkMemoryMapInfo *pMemoryMapInfo,
                                                      void **ppData) {
    return map2(device, pMemoryMapInfo, ppData, find_device(dispatch_key(device))->MapMemory2);
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_UnmapMemory2(VkDevice device, const VkMemoryUnmapInfo *pMemoryUnmapInfo) {
    return unmap2(device, pMemoryUnmapInfo, find_device(dispatch_key(device))->UnmapMemory2);
}
#endif

static VKAPI_ATTR VkResult VKAPI_CALL layer_GetMemoryRemoteAddressNV(VkDevice device,
                                                                    const VkMemoryGetRemoteAddressInfoNV *pInfo,
                                                                    VkRemoteAddressNV *pAddress) {
    device_data *dev = find_device(dispatch_key(device));
    memory_data *entry;
    VkResult result = VK_ERROR_INVALID_EXTERNAL_HANDLE;
    if (!dev->emulating) { /* reached through vkGetInstanceProcAddr on a device the layer does not serve */
        if (dev->GetMemoryRemoteAddressNV == NULL) return VK_ERROR_INVALID_EXTERNAL_HANDLE;
        return dev->GetMemoryRemoteAddressNV(device, pInfo, pAddress);
    }
    /* Only memory allocated with the RDMA-address handle type, asked for with that handle type. */
    if (pInfo->handleType != RDMA_HANDLE_BIT) return VK_ERROR_INVALID_EXTERNAL_HANDLE;
    pthread_mutex_lock(&lock);
    entry = find_memory(dev, pInfo->memory);
    if (entry != NULL && persistent_mapping(dev, entry) == VK_SUCCESS) {
        *pAddress = entry->mapping;
        result = VK_SUCCESS;
    }
    pthread_mutex_unlock(&lock);
    return result;
}

static VKAPI_ATTR void VKAPI_CALL layer_DestroyDevice(VkDevice device, const VkAllocationCallbacks *pAllocator) {
    device_data **link, *dev = NULL;
    memory_data *memory;
    if (device == VK_NULL_HANDLE) return;
    pthread_mutex_lock(&lock);
    for (link = &devices; *link != NULL; link = &(*link)->next) {
        if ((*link)->key == dispatch_key(device)) {
            dev = *link;
            *link = dev->next;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    if (dev == NULL) return;
    while ((memory = dev->memories) != NULL) { /* memory the application did not free */
        dev->memories = memory->next;
        free(memory);
    }
    dev->DestroyDevice(device, pAllocator);
    free(dev);
}

static int enables_extension(const VkDeviceCreateInfo *info) {
    uint32_t i;
    for (i = 0; i < info->enabledExtensionCount; i++) {
        if (strcmp(info->ppEnabledExtensionNames[i], VK_NV_EXTERNAL_MEMORY_RDMA_EXTENSION_NAME) == 0) return 1;
    }
    return 0;
}

static VKAPI_ATTR VkResult VKAPI_CALL layer_CreateDevice(VkPhysicalDevice physical,
                                                        const VkDeviceCreateInfo *pCreateInfo,
                                                        const VkAllocationCallbacks *pAllocator, VkDevice *pDevice) {
    VkLayerDeviceCreateInfo *link = (VkLayerDeviceCreateInfo *)pCreateInfo->pNext;
    PFN_vkGetInstanceProcAddr next_gipa;
    PFN_vkGetDeviceProcAddr next_gdpa;
    PFN_vkCreateDevice create;
    int emulating;
    instance_data *inst = physical_instance(physical, &emulating);
    const VkPhysicalDeviceExternalMemoryRDMAFeaturesNV *feature;
    VkDeviceCreateInfo info = *pCreateInfo;
    const char **names = NULL;
    device_data *dev;
    scratch s;
    uint32_t i;
    VkResult result;

    while (link != NULL &&
           !(link->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO)) {
        link = (VkLayerDeviceCreateInfo *)link->pNext;
    }
    if (link == NULL || link->u.pLayerInfo == NULL || inst == NULL) return VK_ERROR_INITIALIZATION_FAILED;
    next_gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    next_gdpa = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
    create = (PFN_vkCreateDevice)next_gipa(inst->instance, "vkCreateDevice");
    if (create == NULL) return VK_ERROR_INITIALIZATION_FAILED;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext; /* the loader's link info: advanced, as layers do */

    dev = (device_data *)calloc(1, sizeof(*dev));
    if (dev == NULL) return VK_ERROR_OUT_OF_HOST_MEMORY;
    dev->emulating = emulating && enables_extension(pCreateInfo);
    s.count = 0;
    if (dev->emulating) {
        /* Without the extension's name and feature structure, which the driver does not know. */
        names = (const char **)calloc(pCreateInfo->enabledExtensionCount, sizeof(*names));
        if (names == NULL) {
            free(dev);
            return VK_ERROR_OUT_OF_HOST_MEMORY;
        }
        info.enabledExtensionCount = 0;
        for (i = 0; i < pCreateInfo->enabledExtensionCount; i++) {
            if (strcmp(pCreateInfo->ppEnabledExtensionNames[i], VK_NV_EXTERNAL_MEMORY_RDMA_EXTENSION_NAME) != 0) {
                names[info.enabledExtensionCount++] = pCreateInfo->ppEnabledExtensionNames[i];
            }
        }
        info.ppEnabledExtensionNames = names;
        feature = (const VkPhysicalDeviceExternalMemoryRDMAFeaturesNV *)find_in_chain(
            pCreateInfo->pNext, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV);
        dev->rdma_feature = feature != NULL && feature->externalMemoryRDMA;
        if (!chain_replace(pCreateInfo->pNext, VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV,
                           NULL, &s, &info.pNext)) {
            /* Drivers skip structures they do not know, so the feature structure can stay. */
            note("vkCreateDevice: pNext chain not copied (a structure newer than this build)");
            info.pNext = pCreateInfo->pNext;
        }
    }
    result = create(physical, &info, pAllocator, pDevice);
    scratch_free(&s);
    free(names);
    if (result != VK_SUCCESS) {
        free(dev);
        return result;
    }
    dev->key = dispatch_key(*pDevice);
    dev->device = *pDevice;
    dev->physical = physical;
    dev->next_gdpa = next_gdpa;
    inst->GetPhysicalDeviceMemoryProperties(physical, &dev->memory_properties);
#define DEVICE_FUNCTION(name) dev->name = (PFN_vk##name)next_gdpa(*pDevice, "vk" #name)
    DEVICE_FUNCTION(DestroyDevice);
    DEVICE_FUNCTION(CreateBuffer);
    DEVICE_FUNCTION(AllocateMemory);
    DEVICE_FUNCTION(FreeMemory);
    DEVICE_FUNCTION(MapMemory);
    DEVICE_FUNCTION(UnmapMemory);
#if defined(VK_KHR_map_memory2)
    DEVICE_FUNCTION(MapMemory2KHR);
    DEVICE_FUNCTION(UnmapMemory2KHR);
#endif
#if defined(VK_VERSION_1_4)
    DEVICE_FUNCTION(MapMemory2);
    DEVICE_FUNCTION(UnmapMemory2);
#endif
    if (!dev->emulating) DEVICE_FUNCTION(GetMemoryRemoteAddressNV);
#undef DEVICE_FUNCTION
    pthread_mutex_lock(&lock);
    dev->next = devices;
    devices = dev;
    pthread_mutex_unlock(&lock);
    if (dev->emulating) note("device created; VK_NV_external_memory_rdma provided by the layer");
    return VK_SUCCESS;
}

/* ---------------------------------------------------------------------------------------------- */
/* Instance level and the entry points */

static VKAPI_ATTR VkResult VKAPI_CALL layer_CreateInstance(const VkInstanceCreateInfo *pCreateInfo,
                                                          const VkAllocationCallbacks *pAllocator,
                                                          VkInstance *pInstance) {
    VkLayerInstanceCreateInfo *link = (VkLayerInstanceCreateInfo *)pCreateInfo->pNext;
    PFN_vkGetInstanceProcAddr next_gipa;
    PFN_vkCreateInstance create;
    instance_data *inst;
    VkResult result;
    while (link != NULL &&
           !(link->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO)) {
        link = (VkLayerInstanceCreateInfo *)link->pNext;
    }
    if (link == NULL || link->u.pLayerInfo == NULL) return VK_ERROR_INITIALIZATION_FAILED;
    next_gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    create = (PFN_vkCreateInstance)next_gipa(VK_NULL_HANDLE, "vkCreateInstance");
    if (create == NULL) return VK_ERROR_INITIALIZATION_FAILED;
    inst = (instance_data *)calloc(1, sizeof(*inst));
    if (inst == NULL) return VK_ERROR_OUT_OF_HOST_MEMORY;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext;
    result = create(pCreateInfo, pAllocator, pInstance);
    if (result != VK_SUCCESS) {
        free(inst);
        return result;
    }
    inst->key = dispatch_key(*pInstance);
    inst->instance = *pInstance;
    inst->next_gipa = next_gipa;
#define INSTANCE_FUNCTION(name) inst->name = (PFN_vk##name)next_gipa(*pInstance, "vk" #name)
#define INSTANCE_FUNCTION_KHR(name, type) inst->name = (type)next_gipa(*pInstance, "vk" #name)
    INSTANCE_FUNCTION(DestroyInstance);
    INSTANCE_FUNCTION(EnumerateDeviceExtensionProperties);
    INSTANCE_FUNCTION(GetPhysicalDeviceFeatures2);
    INSTANCE_FUNCTION_KHR(GetPhysicalDeviceFeatures2KHR, PFN_vkGetPhysicalDeviceFeatures2);
    INSTANCE_FUNCTION(GetPhysicalDeviceMemoryProperties);
    INSTANCE_FUNCTION(GetPhysicalDeviceMemoryProperties2);
    INSTANCE_FUNCTION_KHR(GetPhysicalDeviceMemoryProperties2KHR, PFN_vkGetPhysicalDeviceMemoryProperties2);
    INSTANCE_FUNCTION(GetPhysicalDeviceExternalBufferProperties);
    INSTANCE_FUNCTION_KHR(GetPhysicalDeviceExternalBufferPropertiesKHR,
                          PFN_vkGetPhysicalDeviceExternalBufferProperties);
    INSTANCE_FUNCTION(GetPhysicalDeviceImageFormatProperties2);
    INSTANCE_FUNCTION_KHR(GetPhysicalDeviceImageFormatProperties2KHR, PFN_vkGetPhysicalDeviceImageFormatProperties2);
#undef INSTANCE_FUNCTION
#undef INSTANCE_FUNCTION_KHR
    /* A 1.0 instance without VK_KHR_get_physical_device_properties2 has neither; the 1.1 names
     * are the same functions as the KHR ones, so each stands in for the other. */
    if (inst->GetPhysicalDeviceFeatures2KHR == NULL) inst->GetPhysicalDeviceFeatures2KHR = inst->GetPhysicalDeviceFeatures2;
    if (inst->GetPhysicalDeviceFeatures2 == NULL) inst->GetPhysicalDeviceFeatures2 = inst->GetPhysicalDeviceFeatures2KHR;
    if (inst->GetPhysicalDeviceMemoryProperties2KHR == NULL)
        inst->GetPhysicalDeviceMemoryProperties2KHR = inst->GetPhysicalDeviceMemoryProperties2;
    if (inst->GetPhysicalDeviceMemoryProperties2 == NULL)
        inst->GetPhysicalDeviceMemoryProperties2 = inst->GetPhysicalDeviceMemoryProperties2KHR;
    if (inst->GetPhysicalDeviceExternalBufferPropertiesKHR == NULL)
        inst->GetPhysicalDeviceExternalBufferPropertiesKHR = inst->GetPhysicalDeviceExternalBufferProperties;
    if (inst->GetPhysicalDeviceExternalBufferProperties == NULL)
        inst->GetPhysicalDeviceExternalBufferProperties = inst->GetPhysicalDeviceExternalBufferPropertiesKHR;
    if (inst->GetPhysicalDeviceImageFormatProperties2KHR == NULL)
        inst->GetPhysicalDeviceImageFormatProperties2KHR = inst->GetPhysicalDeviceImageFormatProperties2;
    if (inst->GetPhysicalDeviceImageFormatProperties2 == NULL)
        inst->GetPhysicalDeviceImageFormatProperties2 = inst->GetPhysicalDeviceImageFormatProperties2KHR;
    pthread_mutex_lock(&lock);
    inst->next = instances;
    instances = inst;
    pthread_mutex_unlock(&lock);
    return VK_SUCCESS;
}

static VKAPI_ATTR void VKAPI_CALL layer_DestroyInstance(VkInstance instance, const VkAllocationCallbacks *pAllocator) {
    instance_data **link, *inst = NULL;
    physical_data **plink, *physical;
    if (instance == VK_NULL_HANDLE) return;
    pthread_mutex_lock(&lock);
    for (link = &instances; *link != NULL; link = &(*link)->next) {
        if ((*link)->key == dispatch_key(instance)) {
            inst = *link;
            *link = inst->next;
            break;
        }
    }
    for (plink = &physicals; *plink != NULL;) {
        physical = *plink;
        if (physical->instance_key == dispatch_key(instance)) {
            *plink = physical->next;
            free(physical);
        } else {
            plink = &physical->next;
        }
    }
    pthread_mutex_unlock(&lock);
    if (inst == NULL) return;
    inst->DestroyInstance(instance, pAllocator);
    free(inst);
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL layer_GetDeviceProcAddr(VkDevice device, const char *pName);

typedef struct named_function {
    const char *name;
    PFN_vkVoidFunction function;
} named_function;

#define NAMED(name) {"vk" #name, (PFN_vkVoidFunction)layer_##name}

/* Intercepted on every device: bookkeeping. */
static const named_function device_always[] = {
    NAMED(GetDeviceProcAddr),
    NAMED(DestroyDevice),
};

/* Intercepted on devices the layer provides the extension for. */
static const named_function device_emulated[] = {
    NAMED(CreateBuffer),
    NAMED(AllocateMemory),
    NAMED(FreeMemory),
    NAMED(MapMemory),
    NAMED(UnmapMemory),
#if defined(VK_KHR_map_memory2)
    NAMED(MapMemory2KHR),
    NAMED(UnmapMemory2KHR),
#endif
#if defined(VK_VERSION_1_4)
    NAMED(MapMemory2),
    NAMED(UnmapMemory2),
#endif
    NAMED(GetMemoryRemoteAddressNV),
};

static const named_function instance_functions[] = {
    NAMED(CreateInstance),
    NAMED(DestroyInstance),
    NAMED(CreateDevice),
    NAMED(EnumerateDeviceExtensionProperties),
    NAMED(GetPhysicalDeviceFeatures2),
    NAMED(GetPhysicalDeviceFeatures2KHR),
    NAMED(GetPhysicalDeviceMemoryProperties),
    NAMED(GetPhysicalDeviceMemoryProperties2),
    NAMED(GetPhysicalDeviceMemoryProperties2KHR),
    NAMED(GetPhysicalDeviceExternalBufferProperties),
    NAMED(GetPhysicalDeviceExternalBufferPropertiesKHR),
    NAMED(GetPhysicalDeviceImageFormatProperties2),
    NAMED(GetPhysicalDeviceImageFormatProperties2KHR),
};

#undef NAMED

static PFN_vkVoidFunction lookup(const named_function *table, size_t count, const char *name) {
    size_t i;
    for (i = 0; i < count; i++) {
        if (strcmp(table[i].name, name) == 0) return table[i].function;
    }
    return NULL;
}

#define LOOKUP(table, name) lookup(table, sizeof(table) / sizeof(table[0]), name)

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL layer_GetDeviceProcAddr(VkDevice device, const char *pName) {
    device_data *dev;
    PFN_vkVoidFunction ours;
    if (pName == NULL || device == VK_NULL_HANDLE) return NULL;
    dev = find_device(dispatch_key(device));
    if (dev == NULL) return NULL;
    ours = LOOKUP(device_always, pName);
    if (ours != NULL) return ours;
    /* A device without the emulated extension gets the next layer's functions, untouched. */
    if (dev->emulating && (ours = LOOKUP(device_emulated, pName)) != NULL) return ours;
    return dev->next_gdpa(device, pName);
}

static VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL layer_GetInstanceProcAddr(VkInstance instance, const char *pName) {
    instance_data *inst;
    PFN_vkVoidFunction ours;
    if (pName == NULL) return NULL;
    if (strcmp(pName, "vkGetInstanceProcAddr") == 0) return (PFN_vkVoidFunction)layer_GetInstanceProcAddr;
    if ((ours = LOOKUP(instance_functions, pName)) != NULL) return ours;
    if ((ours = LOOKUP(device_always, pName)) != NULL) return ours;
    if (instance == VK_NULL_HANDLE) return NULL;
    inst = find_instance(dispatch_key(instance));
    if (inst == NULL) return NULL;
    /* Device functions asked for through the instance: ours, which pass through on devices
     * without the emulated extension. */
    if ((ours = LOOKUP(device_emulated, pName)) != NULL) return ours;
    return inst->next_gipa(instance, pName);
}

LAYER_EXPORT VKAPI_ATTR VkResult VKAPI_CALL vkNegotiateLoaderLayerInterfaceVersion(VkNegotiateLayerInterface *pVersionStruct) {
    if (pVersionStruct == NULL || pVersionStruct->sType != LAYER_NEGOTIATE_INTERFACE_STRUCT) {
        return VK_ERROR_INITIALIZATION_FAILED;
    }
    if (pVersionStruct->loaderLayerInterfaceVersion < 2) return VK_ERROR_INITIALIZATION_FAILED;
    pVersionStruct->loaderLayerInterfaceVersion = 2;
    pVersionStruct->pfnGetInstanceProcAddr = layer_GetInstanceProcAddr;
    pVersionStruct->pfnGetDeviceProcAddr = layer_GetDeviceProcAddr;
    pVersionStruct->pfnGetPhysicalDeviceProcAddr = NULL;
    return VK_SUCCESS;
}
