// VulkanMemory: GPU memory, allocated through Vulkan, that an RDMA NIC can register. It knows
// nothing of verbs: what the NIC takes comes in as a value (NICCapabilities), and what to register
// goes out as one (RegistrableMemory).
//
// VulkanInstance -> PhysicalDevice (capabilityReport) -> VulkanDevice -> allocate(size:strategy:nic:)
// -> VulkanAllocation -> registrable; VulkanRegistration's register(with:access:) makes the
// Verbs.MemoryRegion from it.
// Each arrow's target keeps its source alive; the memory region keeps the allocation alive.
// See docs/vulkan-memory.md.
