import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Doctor
import Foundation
import Verbs
import VulkanMemory
import VulkanRegistration

// The Vulkan half of `vkverbs devices`: what each physical device offers for RDMA and which
// strategy the automatic choice takes.

/// What `devices` says about Vulkan.
struct VulkanSurvey: Codable {
    struct Layer: Codable {
        var name: String
        /// The loader can find it (`vkEnumerateInstanceLayerProperties`).
        var found: Bool
        /// It is on for the instance this survey used.
        var enabled: Bool
    }

    struct Rejection: Codable {
        var strategy: MemoryStrategy
        var reason: String
    }

    /// What `VulkanDevice.allocate(size:strategy: nil, nic:)` did with a small probe allocation.
    struct AutomaticChoice: Codable {
        var probeSize: UInt64
        /// nil when no strategy worked (then `error` says why).
        var strategy: MemoryStrategy?
        var rejected: [Rejection]
        var error: String?
        /// Whether the NIC's side was taken into account (a protection domain of `nicDevice`).
        var nicDevice: String?
    }

    struct Device: Codable {
        var report: CapabilityReport
        var driver: DriverInfo?
        var automaticChoice: AutomaticChoice
    }

    /// False when there is no loader driver or no physical device; `note` says why.
    var available: Bool
    var note: String?
    var layer: Layer
    var devices: [Device]

    /// Surveys every physical device. The reports say what the NIC takes (the peer-memory files
    /// always; dma-buf regions when there is a `pd` to ask); with `pd` the automatic choice checks
    /// the NIC side too. Never throws: what fails is said in `note` or per device.
    static func collect(layer: Bool, nic pd: ProtectionDomain?) -> VulkanSurvey {
        let found = (try? VulkanInstance.availableLayers().contains(ExtensionName.rdmaEmulationLayer)) ?? false
        var survey = VulkanSurvey(available: false, note: nil,
                                  layer: Layer(name: ExtensionName.rdmaEmulationLayer, found: found, enabled: false),
                                  devices: [])
        let instance: VulkanInstance
        do {
            instance = try makeVulkanInstance(layer: layer)
        } catch {
            if case .layerMissing = error {
                survey.note = "\(error); surveyed without it"
                do {
                    instance = try VulkanInstance(options: .init(applicationName: "vkverbs", rdmaEmulationLayer: false))
                } catch {
                    survey.note = describeInstanceFailure(error)
                    return survey
                }
            } else {
                survey.note = describeInstanceFailure(error)
                return survey
            }
        }
        let physical: [PhysicalDevice]
        do {
            physical = try instance.physicalDevices()
        } catch {
            survey.note = "no Vulkan devices: \(error)"
            return survey
        }
        guard !physical.isEmpty else {
            survey.note = "no Vulkan driver: the loader lists no physical device (is a driver installed? VK_DRIVER_FILES)"
            return survey
        }
        survey.available = true
        survey.layer.enabled = wantsEmulationLayer(layer) && survey.note == nil
        let nic = NICCapabilities.probe(pd: pd)
        for device in physical {
            do {
                let report = try device.capabilityReport(nic: nic)
                let choice = automaticChoice(device, nic: pd == nil ? nil : nic, nicDevice: pd?.context.name)
                survey.devices.append(Device(report: report, driver: try? device.driverInfo(), automaticChoice: choice))
            } catch {
                survey.note = (survey.note.map { $0 + "; " } ?? "") + "device \(device.index) (\(device.name)): \(error)"
            }
        }
        return survey
    }

    /// Makes a device and lets the module choose for a 64 KiB allocation, told what `nicDevice` takes.
    static func automaticChoice(_ physical: PhysicalDevice, nic: NICCapabilities?, nicDevice: String?) -> AutomaticChoice {
        let size: UInt64 = 64 * 1024
        var choice = AutomaticChoice(probeSize: size, strategy: nil, rejected: [], error: nil, nicDevice: nicDevice)
        do {
            let device = try VulkanDevice(physicalDevice: physical)
            let allocation = try device.allocate(size: size, strategy: nil, nic: nic)
            choice.strategy = allocation.strategy
            choice.rejected = allocation.rejected.map { Rejection(strategy: $0.strategy, reason: $0.reason) }
        } catch {
            if case let .noStrategy(rejections) = error {
                choice.rejected = rejections.map { Rejection(strategy: $0.strategy, reason: $0.reason) }
            }
            choice.error = error.description
        }
        return choice
    }

    func printText() {
        let layerState = layer.enabled ? "enabled" : layer.found ? "found, not enabled (--layer)" : "not found"
        print("Vulkan (layer \(layer.name): \(layerState)):")
        if let note { print("  \(note)") }
        for device in devices { device.printText() }
    }
}

extension VulkanSurvey.Device {
    func printText() {
        let r = report
        let driverText = driver.map { d in
            [d.name, d.info].compactMap { $0 }.joined(separator: " ") + (d.name == nil ? "version \(d.versionString)" : "")
        } ?? "unknown"
        print(String(format: "  [%d] %@ (%@, vendor 0x%04x, device 0x%04x, Vulkan %@, driver %@)", r.deviceIndex,
                     r.deviceName, r.deviceType, r.vendorID, r.deviceID, r.apiVersion.description, driverText))
        func yes(_ b: Bool) -> String { b ? "yes" : "no" }
        let source = r.externalMemoryRDMASource.map { " from \($0.rawValue)" } ?? ""
        print("    VK_NV_external_memory_rdma: \(yes(r.extensions.externalMemoryRDMA))\(source), feature externalMemoryRDMA: \(yes(r.externalMemoryRDMAFeature))")
        let alignment = r.minImportedHostPointerAlignment.map { " (min alignment \($0))" } ?? ""
        print("    VK_KHR_external_memory_fd: \(yes(r.extensions.externalMemoryFD)), VK_EXT_external_memory_dma_buf: \(yes(r.extensions.externalMemoryDMABuf)), "
              + "VK_EXT_external_memory_host: \(yes(r.extensions.externalMemoryHost))\(alignment), VK_EXT_memory_budget: \(yes(r.extensions.memoryBudget))")
        for heap in r.heaps {
            print("    heap \(heap.index): \(formatBytes(heap.size))\(heap.deviceLocal ? " device-local" : ""), "
                  + "available \(formatBytes(heap.available)) (\(r.budgetSource.rawValue))")
        }
        for type in r.memoryTypes {
            let flags = type.properties.map { $0.replacingOccurrences(of: "_BIT", with: "") }.joined(separator: "|")
            print("    type \(type.index): heap \(type.heapIndex) \(flags.isEmpty ? "(no flags)" : flags)")
        }
        print("    RDMA-capable types: \(r.rdmaCapableMemoryTypes.isEmpty ? "none" : r.rdmaCapableMemoryTypes.map(String.init).joined(separator: ", "))")
        let buffers = r.externalBuffers.map { b -> String in
            guard b.queried else { return "\(b.handleType.rawValue) not queried (no extension)" }
            let what = [b.exportable ? "exportable" : nil, b.importable ? "importable" : nil,
                        b.dedicatedOnly ? "dedicated only" : nil].compactMap { $0 }
            return "\(b.handleType.rawValue) \(what.isEmpty ? "unsupported" : what.joined(separator: " "))"
        }
        print("    external buffers: \(buffers.joined(separator: "; "))")
        if let nic = r.nic {
            let peers = nic.peerMemoryClients.isEmpty ? "none"
                : nic.peerMemoryClients.map { "\($0.path) \($0.version)" }.joined(separator: ", ")
            print("    NIC side: peer-memory clients: \(peers); dma-buf MRs: \(nic.dmaBuf.map { "\($0)" } ?? "not probed (no RDMA device)")")
        } else {
            print("    NIC side: not probed")
        }
        let c = automaticChoice
        let nicText = c.nicDevice.map { " (NIC \($0) considered)" } ?? " (no NIC considered)"
        print("    automatic choice for \(formatBytes(c.probeSize))\(nicText): \(c.strategy?.cliName ?? "none")")
        for rejection in c.rejected { print("      not \(rejection.strategy.cliName): \(rejection.reason)") }
        if let error = c.error, c.rejected.isEmpty { print("      \(error)") }
    }
}
