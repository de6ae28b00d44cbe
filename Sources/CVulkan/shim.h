#ifndef VKVERBS_CVULKAN_SHIM_H
#define VKVERBS_CVULKAN_SHIM_H
#include <vulkan/vulkan.h>
#endif
