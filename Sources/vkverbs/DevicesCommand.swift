import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Verbs
import VulkanMemory

struct DevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List RDMA devices (ports, GIDs) and Vulkan devices (RDMA capability report, automatic strategy).",
        discussion: """
        The Vulkan part is each physical device's capability report (VK_NV_external_memory_rdma and who \
        provides it, external memory handle types, heaps and budgets, memory types) and the memory strategy \
        the automatic choice takes for a small allocation, with why each better one was not taken; with an \
        RDMA device the NIC side (peer-memory client, dma-buf MRs) is taken into account. No RDMA device or \
        no Vulkan driver is reported, not an error.
        """)

    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Enable the emulation layer VK_LAYER_VKVERBS_rdma_emulation for the Vulkan report.") var layer = false

    /// `--json`: both halves.
    struct Report: Encodable {
        var rdmaDevices: [DeviceInfo]
        /// Why the list is empty, when it is.
        var rdmaNote: String?
        var vulkan: VulkanSurvey
    }

    func run() throws {
        let names = Verbs.Devices.names()
        var infos: [DeviceInfo] = []
        for name in names {
            do { infos.append(try Context.open(name: name).info()) } catch { fail(error) }
        }
        // The first RDMA device's protection domain lets the Vulkan report check the NIC side.
        let pd = names.first.flatMap { name in (try? Context.open(name: name)).flatMap { try? ProtectionDomain(context: $0) } }
        let vulkan = VulkanSurvey.collect(layer: layer, nic: pd)
        let noRDMA = "no RDMA devices (the kernel has no RDMA driver loaded, or /dev/infiniband is missing)"
        if json {
            try printJSON(Report(rdmaDevices: infos, rdmaNote: infos.isEmpty ? noRDMA : nil, vulkan: vulkan))
            return
        }
        print("RDMA:")
        if infos.isEmpty { print("  \(noRDMA)") }
        for info in infos {
            print("  \(info.name): fw \(info.attributes.firmwareVersion), max MR \(info.attributes.maxMRSize) B, dma-buf MRs \(info.dmaBuf)")
            for port in info.ports {
                print("    port \(port.number): \(port.state.rawValue), \(port.linkLayer.rawValue), MTU \(port.activeMTU?.bytes ?? 0), max message \(port.maxMessageSize) B")
                for gid in port.gids { print("      gid[\(gid.index)] \(gid.type.rawValue) \(gid.address)") }
            }
        }
        vulkan.printText()
    }
}
