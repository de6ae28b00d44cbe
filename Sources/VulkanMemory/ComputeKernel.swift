import CVulkan
import Sharing

/// A compute pipeline over `storageBuffers` storage buffers (set 0, bindings 0 ..< n) with optional
/// push constants, made from SPIR-V words. Run it with `CommandRecorder.dispatch`; one dispatch at a
/// time, since the descriptor set is rewritten for each.
public final class ComputeKernel: Sendable {
    public let device: VulkanDevice
    public let pushConstantSize: UInt32
    public let storageBuffers: Int
    private let handles: (setLayout: VulkanHandle, layout: VulkanHandle, pipeline: VulkanHandle, pool: VulkanHandle,
                          descriptorSet: VulkanHandle)
    /// `vkUpdateDescriptorSets` needs the set externally synchronized.
    private let bindLock = Locked<Void>(())

    /// `vkCreateShaderModule`, `vkCreateDescriptorSetLayout`, `vkCreatePipelineLayout`,
    /// `vkCreateComputePipelines`, `vkCreateDescriptorPool`, `vkAllocateDescriptorSets`.
    public init(device: VulkanDevice, spirv: [UInt32], pushConstantSize: UInt32 = 0, storageBuffers: Int = 1) throws(VulkanError) {
        guard !spirv.isEmpty, spirv[0] == 0x0723_0203 else { throw .invalidArgument("not SPIR-V (bad magic number)") }
        guard (1...8).contains(storageBuffers) else { throw .invalidArgument("\(storageBuffers) storage buffers (1 ... 8)") }
        guard pushConstantSize % 4 == 0, pushConstantSize <= 128 else {
            throw .invalidArgument("push constant size \(pushConstantSize) must be a multiple of 4, at most 128")
        }
        let d = device.raw
        var cleanup: [() -> Void] = []
        do throws(VulkanError) {
            var moduleInfo = VkShaderModuleCreateInfo()
            moduleInfo.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO
            moduleInfo.codeSize = spirv.count * 4
            let code = UnsafeMutablePointer<UInt32>.allocate(capacity: spirv.count)
            code.initialize(from: spirv, count: spirv.count)
            moduleInfo.pCode = UnsafePointer(code)
            var module: VkShaderModule?
            let created = vkCreateShaderModule(d, &moduleInfo, nil, &module)
            code.deallocate()
            try check(created, "vkCreateShaderModule", VulkanError.pipelineCreation)
            // The pipeline keeps what it needs of the module; it goes when this init ends.
            defer { vkDestroyShaderModule(d, module, nil) }

            let bindingList = (0..<storageBuffers).map { i in
                var binding = VkDescriptorSetLayoutBinding()
                binding.binding = UInt32(i)
                binding.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                binding.descriptorCount = 1
                binding.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT.rawValue
                return binding
            }
            var setLayout: VkDescriptorSetLayout?
            try bindingList.withUnsafeBufferPointer { (bindings) throws(VulkanError) in
                var info = VkDescriptorSetLayoutCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
                info.bindingCount = UInt32(storageBuffers)
                info.pBindings = bindings.baseAddress
                try check(vkCreateDescriptorSetLayout(d, &info, nil, &setLayout), "vkCreateDescriptorSetLayout",
                          VulkanError.pipelineCreation)
            }
            cleanup.append { vkDestroyDescriptorSetLayout(d, setLayout, nil) }

            var range = VkPushConstantRange(stageFlags: VK_SHADER_STAGE_COMPUTE_BIT.rawValue, offset: 0,
                                            size: pushConstantSize)
            var layout: VkPipelineLayout?
            try withUnsafePointer(to: &setLayout) { (setLayouts) throws(VulkanError) in
                try withUnsafePointer(to: &range) { (ranges) throws(VulkanError) in
                    var info = VkPipelineLayoutCreateInfo()
                    info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO
                    info.setLayoutCount = 1
                    info.pSetLayouts = setLayouts
                    info.pushConstantRangeCount = pushConstantSize > 0 ? 1 : 0
                    info.pPushConstantRanges = pushConstantSize > 0 ? ranges : nil
                    try check(vkCreatePipelineLayout(d, &info, nil, &layout), "vkCreatePipelineLayout",
                              VulkanError.pipelineCreation)
                }
            }
            cleanup.append { vkDestroyPipelineLayout(d, layout, nil) }

            var pipeline: VkPipeline?
            let entry = "main"
            try withCStringArray([entry]) { (names, _) throws(VulkanError) in
                var info = VkComputePipelineCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO
                info.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
                info.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT
                info.stage.module = module
                info.stage.pName = names![0]
                info.layout = layout
                try check(vkCreateComputePipelines(d, nil, 1, &info, nil, &pipeline), "vkCreateComputePipelines",
                          VulkanError.pipelineCreation)
            }
            cleanup.append { vkDestroyPipeline(d, pipeline, nil) }

            var poolSize = VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount: UInt32(storageBuffers))
            var pool: VkDescriptorPool?
            try withUnsafePointer(to: &poolSize) { (sizes) throws(VulkanError) in
                var info = VkDescriptorPoolCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
                info.maxSets = 1
                info.poolSizeCount = 1
                info.pPoolSizes = sizes
                try check(vkCreateDescriptorPool(d, &info, nil, &pool), "vkCreateDescriptorPool",
                          VulkanError.pipelineCreation)
            }
            cleanup.append { vkDestroyDescriptorPool(d, pool, nil) }  // Frees the set with it.

            var set: VkDescriptorSet?
            try withUnsafePointer(to: &setLayout) { (setLayouts) throws(VulkanError) in
                var info = VkDescriptorSetAllocateInfo()
                info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
                info.descriptorPool = pool
                info.descriptorSetCount = 1
                info.pSetLayouts = setLayouts
                try check(vkAllocateDescriptorSets(d, &info, &set), "vkAllocateDescriptorSets",
                          VulkanError.pipelineCreation)
            }
            guard let setLayout, let layout, let pipeline, let pool, let set else {
                throw .pipelineCreation(function: "vkAllocateDescriptorSets", result: .errorInitializationFailed)
            }
            handles = (VulkanHandle(setLayout), VulkanHandle(layout), VulkanHandle(pipeline), VulkanHandle(pool),
                       VulkanHandle(set))
        } catch {
            cleanup.reversed().forEach { $0() }
            throw error
        }
        self.device = device
        self.pushConstantSize = pushConstantSize
        self.storageBuffers = storageBuffers
    }

    deinit {
        let d = device.raw
        vkDestroyPipeline(d, pipeline, nil)
        vkDestroyPipelineLayout(d, layout, nil)
        vkDestroyDescriptorPool(d, pool, nil)
        vkDestroyDescriptorSetLayout(d, setLayout, nil)
    }

    var setLayout: VkDescriptorSetLayout { handles.setLayout.raw }
    var layout: VkPipelineLayout { handles.layout.raw }
    var pipeline: VkPipeline { handles.pipeline.raw }
    var pool: VkDescriptorPool { handles.pool.raw }
    var descriptorSet: VkDescriptorSet { handles.descriptorSet.raw }

    /// Points bindings 0 ..< n at `buffers` (`vkUpdateDescriptorSets`); the set must not be in use.
    func bind(_ buffers: [DeviceBuffer]) {
        let infos = buffers.map { VkDescriptorBufferInfo(buffer: $0.raw, offset: 0, range: VkDeviceSize(VK_WHOLE_SIZE)) }
        infos.withUnsafeBufferPointer { bufferInfos in
            var writes = (0..<infos.count).map { i in
                var write = VkWriteDescriptorSet()
                write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
                write.dstSet = descriptorSet
                write.dstBinding = UInt32(i)
                write.descriptorCount = 1
                write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                write.pBufferInfo = bufferInfos.baseAddress! + i
                return write
            }
            bindLock.withLock { _ in vkUpdateDescriptorSets(device.raw, UInt32(writes.count), &writes, 0, nil) }
        }
    }
}
