import CVulkan
import Foundation
import Verbs
import VulkanMemory
import VerbsEmbedded
import VulkanRegistration
import XCTest

/// VK_LAYER_VKVERBS_rdma_emulation (Sources/VkLayerRDMA) on lavapipe, stacked under
/// VK_LAYER_KHRONOS_validation, whose messenger must report nothing (except where a test does
/// something invalid on purpose and says which message it expects).
///
/// The layer is made findable, not enabled: `setUp` writes its manifest (the template in
/// Sources/VkLayerRDMA/manifest, pointing at the libVkLayerRDMA.so next to the test binary, or at
/// VKVERBS_RDMA_LAYER_LIBRARY) into a temporary directory and adds that to VK_ADD_LAYER_PATH, which
/// the loader reads at every vkCreateInstance. Each instance then enables it by name or not.
final class LayerTests: ValidatedVulkanTestCase {
    private static let layerPath = Result<String, Error>(catching: { try installManifest() })

    override func setUp() {
        super.setUp()
        do {
            _ = try Self.layerPath.get()
        } catch {
            XCTFail("\(error)")
        }
    }

    private static func installManifest() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        let library: String
        if let path = environment["VKVERBS_RDMA_LAYER_LIBRARY"] {
            library = path
        } else {
            let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            library = binary.deletingLastPathComponent().appendingPathComponent("libVkLayerRDMA.so").path
        }
        guard FileManager.default.fileExists(atPath: library) else {
            throw VulkanError.invalidArgument(
                "\(library) does not exist (swift build --product VkLayerRDMA, or set VKVERBS_RDMA_LAYER_LIBRARY)")
        }
        let template = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/VkLayerRDMA/manifest/VkLayer_vkverbs_rdma.json.in").standardized
        let manifest = try String(contentsOf: template, encoding: .utf8)
            .replacingOccurrences(of: "@LIBRARY_PATH@", with: library)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vkverbs-layer-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try manifest.write(to: dir.appendingPathComponent("VkLayer_vkverbs_rdma.json"), atomically: true, encoding: .utf8)
        let existing = environment["VK_ADD_LAYER_PATH"].map { ":" + $0 } ?? ""
        setenv("VK_ADD_LAYER_PATH", dir.path + existing, 1)
        return dir.path
    }

    /// Validation on; the emulation layer below it when `layer`.
    private func makeInstance(layer: Bool) throws -> VulkanInstance {
        try VulkanInstance(options: .init(applicationName: "LayerTests", validation: true, validationLog: log,
                                          rdmaEmulationLayer: layer))
    }

    private func makeDevice(layer: Bool, _ options: VulkanDevice.Options = .init()) throws -> VulkanDevice {
        try VulkanDevice(physicalDevice: try lavapipe(try makeInstance(layer: layer)), options: options)
    }

    private let rdmaBit = VK_EXTERNAL_MEMORY_HANDLE_TYPE_RDMA_ADDRESS_BIT_NV.rawValue
    private let hostCoherent = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue

    // MARK: - What the application sees

    /// The loader finds the layer, but it is off unless asked for.
    func testLayerIsFoundButNotEnabledUnlessAskedFor() throws {
        XCTAssertTrue(try VulkanInstance.availableLayers().contains(ExtensionName.rdmaEmulationLayer))
        let report = try lavapipe(try makeInstance(layer: false)).capabilityReport()
        XCTAssertFalse(report.extensions.externalMemoryRDMA)
        XCTAssertNil(report.externalMemoryRDMASource)
    }

    /// With the layer: the extension, the feature, RDMA_CAPABLE on the HOST_VISIBLE|HOST_COHERENT types
    /// and an exportable RDMA-address type, and the report says the layer provides them.
    func testReportSaysTheExtensionComesFromTheLayer() throws {
        let report = try lavapipe(try makeInstance(layer: true)).capabilityReport()
        XCTAssertTrue(report.extensions.externalMemoryRDMA)
        XCTAssertTrue(report.externalMemoryRDMAFeature)
        XCTAssertEqual(report.externalMemoryRDMASource, .vkverbsLayer)
        let expected = report.memoryTypes.filter { $0.propertyFlags & hostCoherent == hostCoherent }.map(\.index)
        XCTAssertFalse(expected.isEmpty)
        XCTAssertEqual(report.rdmaCapableMemoryTypes, expected)
        for type in report.memoryTypes {
            XCTAssertEqual(type.rdmaCapable, expected.contains(type.index))
            XCTAssertEqual(type.properties.contains("RDMA_CAPABLE_BIT_NV"), type.rdmaCapable)
        }
        let rdma = try XCTUnwrap(report.externalBuffer(.rdmaAddress))
        XCTAssertTrue(rdma.queried)
        XCTAssertTrue(rdma.exportable)
        XCTAssertFalse(rdma.importable)
        XCTAssertFalse(rdma.dedicatedOnly)
        XCTAssertEqual(rdma.compatibleHandleTypes, rdmaBit)
        let data = try JSONEncoder().encode(report)
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains(#""externalMemoryRDMASource":"vkverbs-layer""#))
        XCTAssertEqual(try JSONDecoder().decode(CapabilityReport.self, from: data), report)
    }

    /// Everything but the NV parts is the driver's: the same extension list plus one, the same memory
    /// types plus one bit, the same answers for the other handle types.
    func testLayerAddsOnlyTheExtension() throws {
        let plain = try lavapipe(try makeInstance(layer: false))
        let layered = try lavapipe(try makeInstance(layer: true))
        XCTAssertEqual(try layered.supportedExtensions(), try plain.supportedExtensions().union([ExtensionName.externalMemoryRDMA]))
        let with = try layered.capabilityReport(), without = try plain.capabilityReport()
        XCTAssertEqual(with.heaps, without.heaps)
        XCTAssertEqual(with.memoryTypes.map { $0.propertyFlags & ~VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV.rawValue },
                       without.memoryTypes.map(\.propertyFlags))
        XCTAssertEqual(with.externalBuffer(.opaqueFD), without.externalBuffer(.opaqueFD))
        XCTAssertEqual(with.externalBuffer(.dmaBuf), without.externalBuffer(.dmaBuf))
        XCTAssertEqual(with.minImportedHostPointerAlignment, without.minImportedHostPointerAlignment)
    }

    /// A device created without the extension, with the layer on, behaves as without the layer:
    /// the automatic choice is host-pointer import and there is no vkGetMemoryRemoteAddressNV.
    func testDeviceWithoutTheExtensionIsPassedThrough() throws {
        let device = try makeDevice(layer: true, .init(extensions: [ExtensionName.externalMemoryFD, ExtensionName.externalMemoryHost]))
        XCTAssertFalse(device.externalMemoryRDMAEnabled)
        XCTAssertNil(vkGetDeviceProcAddr(device.raw, "vkGetMemoryRemoteAddressNV"))
        let allocation = try device.allocate(size: 8192)
        XCTAssertEqual(allocation.strategy, .hostPointerImport)
        XCTAssertEqual(allocation.rejected.first?.error,
                       .extensionMissing(ExtensionName.externalMemoryRDMA, neededFor: "RDMA-address export"))
        let engine = try GPUCommandRunner(device: device)
        try engine.fill(allocation.buffer, value: 0x5A5A_5A5A)
        XCTAssertTrue(try XCTUnwrap(allocation.hostBytes).allSatisfy { $0 == 0x5A })
    }

    // MARK: - The NV path

    /// The module's NV path (not a fallback) on lavapipe: the device enables the extension and the
    /// feature, the automatic choice is `rdmaAddress` with nothing rejected, and the remote address
    /// is the memory itself: what the GPU writes is there, and what is written there the GPU reads.
    func testNVPathAllocatesAndTheAddressIsTheMemory() throws {
        let device = try makeDevice(layer: true)
        XCTAssertTrue(device.enabledExtensions.contains(ExtensionName.externalMemoryRDMA))
        XCTAssertTrue(device.externalMemoryRDMAEnabled)
        let engine = try GPUCommandRunner(device: device)
        let kernel = try ComputeKernel(device: device, spirv: PatternShader.spirv, pushConstantSize: 8)
        let size: UInt64 = 3 * 4096 + 256
        let allocation = try device.allocate(size: size)
        XCTAssertEqual(allocation.strategy, .rdmaAddress)
        XCTAssertEqual(allocation.rejected, [])
        XCTAssertTrue(allocation.buffer.memoryType.rdmaCapable)
        guard case let .remoteAddress(address, length) = allocation.registrable.location else {
            return XCTFail("expected a remote address, got \(allocation.registrable.location)")
        }
        XCTAssertEqual(length, Int(size))
        let bytes = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: UInt(address)), count: Int(size))
        XCTAssertNotNil(bytes.baseAddress)

        try writePattern(allocation.buffer, seed: 77, kernel: kernel, engine: engine)
        XCTAssertEqual(Array(bytes.bindMemory(to: UInt32.self)), expectedPattern(words: Int(size / 4), seed: 77))

        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 13 &+ 5) }
        let check = try DeviceBuffer(device: device, size: size, hostVisible: true)
        try engine.copy(from: allocation.buffer, to: check)
        XCTAssertEqual(Array(check.bytes!), Array(bytes))

        let second = try device.allocate(size: 4096, strategy: .rdmaAddress)
        guard case let .remoteAddress(other, _) = second.registrable.location else { return XCTFail("no remote address") }
        XCTAssertNotEqual(other, address)
    }

    /// A GPU address is not memory the kernel can fault in for this process: asked to register
    /// it for on-demand paging, the bridge refuses with `.unsupported` before asking any device.
    func testNVPathMemoryIsNotRegisteredOnDemand() throws {
        let device = try makeDevice(layer: true)
        let allocation = try device.allocate(size: 4096, strategy: .rdmaAddress)
        let link = InMemoryLink()
        XCTAssertThrowsError(try allocation.registrable.register(with: link.a.pd, access: .remote, paging: .onDemand)) { error in
            guard case let .unsupported(verb, code)? = error as? VerbsError else { return XCTFail("expected .unsupported, got \(error)") }
            XCTAssertTrue(verb.contains("on-demand paging of rdmaAddress memory (a GPU address)"), verb)
            XCTAssertEqual(code, EOPNOTSUPP)
        }
        // Pinned, the same memory registers.
        XCTAssertNoThrow(try allocation.registrable.register(with: link.a.pd, access: .remote))
    }

    /// Without the layer, the same request sees the NV path as unsupported.
    func testWithoutTheLayerTheNVPathIsUnsupported() throws {
        let device = try makeDevice(layer: false)
        XCTAssertFalse(device.enabledExtensions.contains(ExtensionName.externalMemoryRDMA))
        XCTAssertFalse(device.externalMemoryRDMAEnabled)
        let report = try device.physicalDevice.capabilityReport()
        XCTAssertNil(report.externalMemoryRDMASource)
        XCTAssertFalse(report.externalMemoryRDMAFeature)
        XCTAssertEqual(report.rdmaCapableMemoryTypes, [])
        let missing = VulkanError.extensionMissing(ExtensionName.externalMemoryRDMA, neededFor: "RDMA-address export")
        assertThrows(missing) { () throws(VulkanError) in try device.allocate(size: 4096, strategy: .rdmaAddress) }
        let allocation = try device.allocate(size: 4096)
        XCTAssertNotEqual(allocation.strategy, .rdmaAddress)
        XCTAssertEqual(allocation.rejected.first, StrategyRejection(strategy: .rdmaAddress, error: missing))
    }

    // MARK: - Raw Vulkan through the layer

    private struct RawMemory {
        let device: VulkanDevice
        let memory: VkDeviceMemory
        let buffer: VkBuffer?
    }

    /// A buffer and memory made with plain Vulkan calls; with `rdma`, both carry the RDMA-address handle type.
    private func rawAllocation(_ device: VulkanDevice, size: UInt64, rdma: Bool) throws -> RawMemory {
        var external = VkExternalMemoryBufferCreateInfo()
        external.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO
        external.handleTypes = rdmaBit
        var bufferInfo = VkBufferCreateInfo()
        bufferInfo.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
        bufferInfo.size = size
        bufferInfo.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue
        bufferInfo.sharingMode = VK_SHARING_MODE_EXCLUSIVE
        var buffer: VkBuffer?
        let created = withUnsafePointer(to: &external) { externalInfo in
            bufferInfo.pNext = rdma ? UnsafeRawPointer(externalInfo) : nil
            return vkCreateBuffer(device.raw, &bufferInfo, nil, &buffer)
        }
        XCTAssertEqual(created, VK_SUCCESS)
        var requirements = VkMemoryRequirements()
        vkGetBufferMemoryRequirements(device.raw, buffer, &requirements)
        let types = try device.physicalDevice.memorySnapshot().types
        let type = try XCTUnwrap(types.first {
            requirements.memoryTypeBits & (1 << UInt32($0.index)) != 0 && (!rdma || $0.rdmaCapable)
                && $0.propertyFlags & hostCoherent == hostCoherent
        })
        var export = VkExportMemoryAllocateInfo()
        export.sType = VK_STRUCTURE_TYPE_EXPORT_MEMORY_ALLOCATE_INFO
        export.handleTypes = rdmaBit
        var info = VkMemoryAllocateInfo()
        info.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
        info.allocationSize = requirements.size
        info.memoryTypeIndex = UInt32(type.index)
        var memory: VkDeviceMemory?
        let allocated = withUnsafePointer(to: &export) { exportInfo in
            info.pNext = rdma ? UnsafeRawPointer(exportInfo) : nil
            return vkAllocateMemory(device.raw, &info, nil, &memory)
        }
        XCTAssertEqual(allocated, VK_SUCCESS)
        XCTAssertEqual(vkBindBufferMemory(device.raw, buffer, memory, 0), VK_SUCCESS)
        return RawMemory(device: device, memory: try XCTUnwrap(memory), buffer: buffer)
    }

    private func free(_ raw: RawMemory) {
        vkDestroyBuffer(raw.device.raw, raw.buffer, nil)
        vkFreeMemory(raw.device.raw, raw.memory, nil)
    }

    private func remoteAddress(_ raw: RawMemory, handleType: VkExternalMemoryHandleTypeFlagBits = VK_EXTERNAL_MEMORY_HANDLE_TYPE_RDMA_ADDRESS_BIT_NV)
        throws -> (VkResult, VkRemoteAddressNV?)
    {
        let function = try XCTUnwrap(vkGetDeviceProcAddr(raw.device.raw, "vkGetMemoryRemoteAddressNV"))
        let get = unsafeBitCast(function, to: PFN_vkGetMemoryRemoteAddressNV.self)
        var info = VkMemoryGetRemoteAddressInfoNV()
        info.sType = VK_STRUCTURE_TYPE_MEMORY_GET_REMOTE_ADDRESS_INFO_NV
        info.memory = raw.memory
        info.handleType = handleType
        var address: VkRemoteAddressNV?
        let result = get(raw.device.raw, &info, &address)
        return (result, address)
    }

    /// Bad use: the RDMA address of memory not allocated with the RDMA-address handle type, or asked for
    /// with another handle type, is VK_ERROR_INVALID_EXTERNAL_HANDLE. Validation rightly reports
    /// VUID-VkMemoryGetRemoteAddressInfoNV-handleType-04966 for each; nothing else.
    func testRemoteAddressOfMemoryWithoutTheHandleTypeIsInvalidExternalHandle() throws {
        let device = try makeDevice(layer: true)
        let plain = try rawAllocation(device, size: 4096, rdma: false)
        defer { free(plain) }
        XCTAssertEqual(try remoteAddress(plain).0, VK_ERROR_INVALID_EXTERNAL_HANDLE)
        let exported = try rawAllocation(device, size: 4096, rdma: true)
        defer { free(exported) }
        XCTAssertEqual(try remoteAddress(exported, handleType: VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT).0,
                       VK_ERROR_INVALID_EXTERNAL_HANDLE)
        let (result, address) = try remoteAddress(exported)
        XCTAssertEqual(result, VK_SUCCESS)
        XCTAssertNotNil(address)
        let unexpected = log.messages.filter { $0.id != "VUID-VkMemoryGetRemoteAddressInfoNV-handleType-04966" }
        XCTAssertEqual(unexpected, [])
        log.removeAll()
    }

    /// The application may map RDMA memory too: it gets the layer's persistent mapping (at its offset),
    /// its unmap leaves the remote address valid, and it can map again; freeing unmaps.
    func testApplicationMappingSharesTheRemoteAddress() throws {
        let device = try makeDevice(layer: true)
        let raw = try rawAllocation(device, size: 8192, rdma: true)
        defer { free(raw) }
        let (result, remote) = try remoteAddress(raw)
        XCTAssertEqual(result, VK_SUCCESS)
        let address = try XCTUnwrap(remote)
        var mapped: UnsafeMutableRawPointer?
        XCTAssertEqual(vkMapMemory(device.raw, raw.memory, 256, 1024, 0, &mapped), VK_SUCCESS)
        XCTAssertEqual(mapped, address + 256)
        mapped?.storeBytes(of: 0xDEAD_BEEF as UInt32, as: UInt32.self)
        vkUnmapMemory(device.raw, raw.memory)
        XCTAssertEqual(address.load(fromByteOffset: 256, as: UInt32.self), 0xDEAD_BEEF)
        address.storeBytes(of: 0x1234_5678 as UInt32, toByteOffset: 512, as: UInt32.self)
        XCTAssertEqual(vkMapMemory(device.raw, raw.memory, 0, VkDeviceSize(VK_WHOLE_SIZE), 0, &mapped), VK_SUCCESS)
        XCTAssertEqual(mapped, address)
        XCTAssertEqual(mapped?.load(fromByteOffset: 512, as: UInt32.self), 0x1234_5678)
        vkUnmapMemory(device.raw, raw.memory)
        let (again, same) = try remoteAddress(raw)
        XCTAssertEqual(again, VK_SUCCESS)
        XCTAssertEqual(same, address)
    }

    /// The layer enabled by the loader's environment variable (VK_INSTANCE_LAYERS puts it above the
    /// validation layer the instance asks for), so validation checks what the layer hands the driver:
    /// a device, buffers and memory without any trace of the extension, mappings and frees in order.
    /// The device is created with a longer pNext chain than the module's (the layer copies the part
    /// before the NV structure).
    func testWhatTheLayerHandsDownIsValidWithoutTheExtension() throws {
        let previous = ProcessInfo.processInfo.environment["VK_INSTANCE_LAYERS"]
        setenv("VK_INSTANCE_LAYERS", ExtensionName.rdmaEmulationLayer, 1)
        defer {
            if let previous { setenv("VK_INSTANCE_LAYERS", previous, 1) } else { unsetenv("VK_INSTANCE_LAYERS") }
        }
        let physical = try lavapipe(try makeInstance(layer: false))
        XCTAssertEqual(try physical.externalMemoryRDMASource(), .vkverbsLayer)
        var count: UInt32 = 0
        XCTAssertEqual(vkEnumerateDeviceLayerProperties(physical.raw, &count, nil), VK_SUCCESS)
        var layers = [VkLayerProperties](repeating: VkLayerProperties(), count: Int(count))
        XCTAssertEqual(vkEnumerateDeviceLayerProperties(physical.raw, &count, &layers), VK_SUCCESS)
        let names = layers.map { layer in
            withUnsafeBytes(of: layer.layerName) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        }
        let ours = try XCTUnwrap(names.firstIndex(of: ExtensionName.rdmaEmulationLayer))
        XCTAssertLessThan(ours, try XCTUnwrap(names.firstIndex(of: ExtensionName.validationLayer)), "\(names)")
        try createDeviceWithLongChain(physical)

        let device = try VulkanDevice(physicalDevice: physical)
        XCTAssertTrue(device.externalMemoryRDMAEnabled)
        let allocation = try device.allocate(size: 8192)
        XCTAssertEqual(allocation.strategy, .rdmaAddress)
        let engine = try GPUCommandRunner(device: device)
        try engine.fill(allocation.buffer, value: 0x0102_0304)
        guard case let .remoteAddress(address, _) = allocation.registrable.location else { return XCTFail("no address") }
        XCTAssertEqual(UnsafeRawPointer(bitPattern: UInt(address))?.load(as: UInt32.self), 0x0102_0304)

        let raw = try rawAllocation(device, size: 4096, rdma: true)
        XCTAssertEqual(try remoteAddress(raw).0, VK_SUCCESS)
        var mapped: UnsafeMutableRawPointer?
        XCTAssertEqual(vkMapMemory(device.raw, raw.memory, 0, VkDeviceSize(VK_WHOLE_SIZE), 0, &mapped), VK_SUCCESS)
        vkUnmapMemory(device.raw, raw.memory)
        free(raw)
        // The loader says it added the layer from the environment; that is all it may say.
        let loaderNote = { (message: ValidationMessage) in
            message.id == "Loader Message" && message.text.contains("VK_INSTANCE_LAYERS")
        }
        XCTAssertFalse(log.messages.filter(loaderNote).isEmpty)
        XCTAssertEqual(log.messages.filter { !loaderNote($0) }, [])
        log.removeAll()  // Destroying the objects below is still checked, by tearDown.
    }

    /// vkCreateDevice with VkPhysicalDeviceFeatures2 -> VkPhysicalDevice16BitStorageFeatures ->
    /// VkPhysicalDeviceExternalMemoryRDMAFeaturesNV -> VkPhysicalDeviceShaderDrawParametersFeatures.
    private func createDeviceWithLongChain(_ physical: PhysicalDevice) throws {
        let family = try XCTUnwrap(physical.computeQueueFamily())
        var tail = VkPhysicalDeviceShaderDrawParametersFeatures()
        tail.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_DRAW_PARAMETERS_FEATURES
        var rdma = VkPhysicalDeviceExternalMemoryRDMAFeaturesNV()
        rdma.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_RDMA_FEATURES_NV
        rdma.externalMemoryRDMA = VkBool32(VK_TRUE)
        var storage = VkPhysicalDevice16BitStorageFeatures()
        storage.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES
        var features = VkPhysicalDeviceFeatures2()
        features.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2
        var priority: Float = 1
        var queue = VkDeviceQueueCreateInfo()
        queue.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
        queue.queueFamilyIndex = family
        queue.queueCount = 1
        let name = strdup(ExtensionName.externalMemoryRDMA)
        defer { Foundation.free(name) }
        var names: [UnsafePointer<CChar>?] = [UnsafePointer(name)]
        var device: VkDevice?
        let result = withUnsafeMutablePointer(to: &tail) { tailPointer in
            rdma.pNext = UnsafeMutableRawPointer(tailPointer)
            return withUnsafeMutablePointer(to: &rdma) { rdmaPointer in
                storage.pNext = UnsafeMutableRawPointer(rdmaPointer)
                return withUnsafeMutablePointer(to: &storage) { storagePointer in
                    features.pNext = UnsafeMutableRawPointer(storagePointer)
                    return withUnsafePointer(to: &features) { featuresPointer in
                        withUnsafePointer(to: &priority) { priorities in
                            queue.pQueuePriorities = priorities
                            return withUnsafePointer(to: &queue) { queues in
                                var info = VkDeviceCreateInfo()
                                info.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                                info.pNext = UnsafeRawPointer(featuresPointer)
                                info.queueCreateInfoCount = 1
                                info.pQueueCreateInfos = queues
                                info.enabledExtensionCount = 1
                                let created = names.withUnsafeMutableBufferPointer { buffer in
                                    info.ppEnabledExtensionNames = UnsafePointer(buffer.baseAddress)
                                    return vkCreateDevice(physical.raw, &info, nil, &device)
                                }
                                // The application's chain is as it was.
                                XCTAssertEqual(storagePointer.pointee.pNext, UnsafeMutableRawPointer(rdmaPointer))
                                XCTAssertEqual(rdmaPointer.pointee.pNext, UnsafeMutableRawPointer(tailPointer))
                                XCTAssertEqual(info.ppEnabledExtensionNames?.pointee, UnsafePointer(name))
                                return created
                            }
                        }
                    }
                }
            }
        }
        XCTAssertEqual(result, VK_SUCCESS)
        XCTAssertEqual(rdma.externalMemoryRDMA, VkBool32(VK_TRUE))
        if let device { vkDestroyDevice(device, nil) }
    }

    // MARK: - Over the fabric

    /// In the rxe fabric: the NV path's address is registered with `ibv_reg_mr` (VulkanRegistration's
    /// `RegistrableMemory.register(with:access:)`), a peer RDMA-writes into it and the GPU reads it back. Skipped without an
    /// RDMA device unless VKVERBS_REQUIRE_RDMA=1.
    func testPeerWritesIntoTheNVAddressAndGPUReadsIt() throws {
        let fabric = try requireFabric()
        let device = try makeDevice(layer: true)
        let engine = try GPUCommandRunner(device: device)
        let size = 3 * 4096 + 256
        let listener = try Listener(address: fabric, port: 0)
        let writer = WriterThread(host: fabric, port: listener.port, size: size, count: 1)
        writer.start()
        let request = try listener.accept(timeout: .seconds(30))
        let pd = try ProtectionDomain(context: request.context)
        // Told about the NIC, the automatic choice still takes the NV path: the layer's address is host memory.
        let allocation = try device.allocate(size: UInt64(size), nic: .probe(pd: pd))
        XCTAssertEqual(allocation.strategy, .rdmaAddress)
        XCTAssertEqual(allocation.rejected, [])
        guard case let .remoteAddress(address, _) = allocation.registrable.location else {
            return XCTFail("expected a remote address")
        }
        let region = try allocation.registrable.register(with: pd, access: .remote)
        XCTAssertTrue(region.owner === allocation)
        XCTAssertEqual(region.length, size)
        let cq = try CompletionQueue(context: request.context, capacity: 8)
        let prepared = try request.prepare(pd: pd, sendCQ: cq, receiveCQ: cq)
        let connection = try prepared.accept(privateData: region.remoteBuffer.encoded, timeout: .seconds(30))
        try writer.wait(timeout: 60)

        let check = try DeviceBuffer(device: device, size: UInt64(size), hostVisible: true)
        try engine.copy(from: allocation.buffer, to: check)
        XCTAssertEqual(Array(check.bytes!), WriterThread.pattern(size: size, index: 0))
        let atAddress = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(address)), count: size)
        XCTAssertEqual(Array(atAddress), WriterThread.pattern(size: size, index: 0))
        try? connection.disconnect(timeout: .seconds(2))
        writer.finish(timeout: 10)
    }

}
