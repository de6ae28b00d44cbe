// VulkanRegistration: where the verbs layer and the Vulkan layer meet, and nothing else.
// VulkanMemory describes memory (RegistrableMemory) and takes what the NIC can do as a value
// (NICCapabilities); Verbs registers memory. This module fills the value in from a protection
// domain (NICProbe.swift) and registers a Vulkan allocation with one (MemoryRegistration.swift).
// Every module that registers GPU memory imports it; neither VulkanMemory nor Verbs imports the other.
