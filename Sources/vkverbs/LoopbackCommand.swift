import ArgumentParser
import Foundation
import SelfTest
import Verbs
import VulkanMemory

struct LoopbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loopback",
        abstract: "Over a local RDMA device, connect to this host and move Vulkan memory both ways with every strategy, verified.")

    @OptionGroup var rdma: RDMAPortOptions
    @Option(help: "Vulkan device index.") var vulkanDevice: Int = 0
    @Option(help: "Strategies to try (default: all): rdmaAddress, dmaBuf, hostPointerImport, hostVisible, staged.")
    var strategy: [String] = []
    @Option(help: "Sizes in bytes (default: 1, 4095, 1048576).") var size: [Int] = []
    @Flag(help: "Enable the VK_NV_external_memory_rdma emulation layer (VK_LAYER_VKVERBS_rdma_emulation).") var layer = false
    @Option(help: "Seconds each step may take.") var timeout: Int = 60

    func validate() throws {
        for s in size where s <= 0 { throw ValidationError("--size must be at least 1 byte, got \(s)") }
        for s in strategy where MemoryStrategy(rawValue: s) == nil {
            throw ValidationError("unknown strategy \(s) (one of \(MemoryStrategy.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
    }

    func run() throws {
        let local = rdma.localPort()
        let device: VulkanDevice
        do {
            device = try VulkanDevice(instance: try makeVulkanInstance(layer: layer), deviceIndex: vulkanDevice)
        } catch {
            fail("Vulkan: \(error)")
        }
        let address = local.address
        print("loopback: RDMA \(local.context.name) at \(address), Vulkan \(device.physicalDevice.name)")
        let strategies = strategy.isEmpty ? MemoryStrategy.allCases : strategy.compactMap(MemoryStrategy.init(rawValue:))
        let checks: [LoopbackCheck]
        do {
            checks = try VulkanLoopback.run(address: address, device: device, sizes: size.isEmpty ? [1, 4095, 1 << 20] : size,
                                            strategies: strategies, timeout: .seconds(timeout))
        } catch {
            fail(error)
        }
        for check in checks { print("loopback:   \(check)") }
        let ran = checks.filter { !$0.unsupported }
        let failed = ran.filter { !$0.passed }.count
        let unsupported = Set(checks.filter(\.unsupported).map(\.strategy)).map(\.rawValue).sorted()
        print("loopback: \(ran.count - failed) passed, \(failed) failed"
              + (unsupported.isEmpty ? "" : "; not available here: \(unsupported.joined(separator: ", "))"))
        if failed > 0 || ran.isEmpty { throw ExitCode(1) }
    }
}
