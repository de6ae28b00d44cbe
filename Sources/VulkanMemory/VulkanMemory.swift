// VulkanMemory: GPU memory, allocated through Vulkan, that an RDMA NIC can register.
//
// VulkanInstance -> PhysicalDevice (capabilityReport) -> VulkanDevice -> allocate(size:strategy:nic:)
// -> VulkanAllocation -> registrable.register(with:access:) -> Verbs.MemoryRegion.
// Each arrow's target keeps its source alive; the memory region keeps the allocation alive.
// See docs/vulkan-memory.md.
