/*
 * VK_LAYER_VKVERBS_rdma_emulation: a Vulkan layer that provides VK_NV_external_memory_rdma on
 * drivers that lack it. The "remote address" it hands out is a persistent host mapping of the
 * allocation, which a NIC registers with ibv_reg_mr like any host memory. See docs/vulkan-layer.md.
 *
 * The loader finds the layer through its JSON manifest and calls the one exported function below;
 * everything else is reached through the pointers it returns.
 */
#ifndef VKVERBS_RDMA_LAYER_H
#define VKVERBS_RDMA_LAYER_H

#include <vulkan/vk_layer.h>

#define VKVERBS_RDMA_LAYER_NAME "VK_LAYER_VKVERBS_rdma_emulation"
#define VKVERBS_RDMA_LAYER_DESCRIPTION "VkVerbs: VK_NV_external_memory_rdma over host-visible memory"
#define VKVERBS_RDMA_LAYER_IMPLEMENTATION_VERSION 1

#endif
