#if canImport(Glibc)
import Glibc
#endif
import CVulkan
import Doctor
import Foundation
import Verbs
import VulkanRegistration
import VulkanMemory

// What `vkverbs doctor` reads off the machine. Each probe runs on a thread of its own and is
// waited for at most a bound; one that does not answer is reported as hung, never waited out.

/// The RDMA probe's answer: the facts, and the protection domain the Vulkan probe lets the
/// automatic choice check the NIC side with.
struct RDMAProbe: Sendable {
    var facts: RDMAFacts
    var pd: ProtectionDomain?
}

enum DoctorProbe {
    /// The modules the chain is made of, as /proc/modules names them.
    static let relevantModules = [
        "ib_core", "ib_uverbs", "rdma_cm", "rdma_ucm", "rdma_rxe", "siw", "mlx5_ib", "mlx5_core", "mlx4_ib", "irdma", "bnxt_re",
        "efa", "nvidia", "nvidia_peermem", "nv_peer_mem", "ib_peer_mem", "amdgpu",
    ]
    static let peerMemoryModules = ["nvidia_peermem", "nv_peer_mem", "ib_peer_mem"]

    static func rdma() -> RDMAProbe {
        let fm = FileManager.default
        let kernelDevices = ((try? fm.contentsOfDirectory(atPath: "/sys/class/infiniband")) ?? []).sorted()
        let dev = (try? fm.contentsOfDirectory(atPath: "/dev/infiniband")) ?? []
        let loaded = loadedModules()
        var facts = RDMAFacts(
            kernelCore: fm.fileExists(atPath: "/sys/module/ib_core") || fm.fileExists(atPath: "/sys/class/infiniband"),
            softRoCEAvailable: softRoCEAvailable(loaded: loaded), kernelDevices: kernelDevices,
            uverbsPresent: dev.contains { $0.hasPrefix("uverbs") },
            modules: relevantModules.filter { loaded.contains($0) || fm.fileExists(atPath: "/sys/module/\($0)") },
            cm: CMFacts(deviceFile: fm.fileExists(atPath: "/dev/infiniband/rdma_cm")))
        var contexts: [String: Context] = [:]
        for name in Verbs.Devices.names() {
            do throws(VerbsError) {
                let context = try Context.open(name: name)
                let info = try context.info()
                var device = RDMADeviceFacts(name: name, ports: info.ports.map { portFacts(device: name, $0) })
                do throws(VerbsError) { device.odp = try context.onDemandPaging() } catch { device.odpError = error.description }
                facts.devices.append(device)
                contexts[name] = context
            } catch {
                facts.deviceErrors[name] = error.description
            }
        }
        // rdma_cm: a listener on the first usable port's address (the wildcard when there is none).
        let usable = facts.devices.lazy.flatMap { d in d.ports.map { (d.name, $0) } }.first { $0.1.state == .active && $0.1.usableGID != nil }
        if facts.cm.deviceFile {
            let address = usable.flatMap { $0.1.usableGID }.map(\.address)
            facts.cm.address = address
            do throws(VerbsError) {
                let listener = try Listener(address: address, port: 0)
                facts.cm.bound = true
                facts.cm.boundDevice = listener.context?.name
            } catch {
                facts.cm.error = error.description
                facts.cm.errno = error.errno
            }
        }
        // The NIC side of the memory paths, on the device traffic would take.
        let pdDevice = usable?.0 ?? facts.devices.first?.name
        let pd = pdDevice.flatMap { contexts[$0] }.flatMap { try? ProtectionDomain(context: $0) }
        let nic = NICCapabilities.probe(pd: nil)
        facts.dmaBuf = pd?.dmaBufSupport()
        facts.dmaBufDevice = pd?.context.name
        let peerDirs = ((try? fm.contentsOfDirectory(atPath: "/sys/kernel/mm/memory_peers")) ?? []).sorted()
        facts.peerMemoryClients = nic.peerMemoryClients.map { "\($0.path) \($0.version)" }
            + peerDirs.map { "/sys/kernel/mm/memory_peers/\($0)" }.filter { dir in !nic.peerMemoryClients.contains { $0.path.hasPrefix(dir) } }
            + peerMemoryModules.filter { loaded.contains($0) }.map { "module \($0)" }
        return RDMAProbe(facts: facts, pd: pd)
    }

    static func portFacts(device: String, _ p: PortInfo) -> PortFacts {
        var facts = PortFacts(number: Int(p.number), state: p.state, linkLayer: p.linkLayer, activeMTU: p.activeMTU?.bytes,
                              maxMTU: p.maxMTU?.bytes, gids: p.gids.map(GIDFacts.init))
        let base = "/sys/class/infiniband/\(device)/ports/\(p.number)/gid_attrs/ndevs/"
        facts.netdev = p.gids.lazy.compactMap { readLine(base + String($0.index)) }.first { !$0.isEmpty }
        facts.netdevMTU = facts.netdev.flatMap { readLine("/sys/class/net/\($0)/mtu") }.flatMap { Int($0) }
        return facts
    }

    static func loadedModules() -> Set<String> {
        guard let bytes = try? readFileBytes("/proc/modules", limit: 1 << 20) else { return [] }
        return Set(String(decoding: bytes, as: UTF8.self).split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
    }

    /// Whether this kernel has rdma_rxe: loaded, built in, or among its modules; nil when its
    /// module directory cannot be read.
    static func softRoCEAvailable(loaded: Set<String>) -> Bool? {
        if loaded.contains("rdma_rxe") || FileManager.default.fileExists(atPath: "/sys/module/rdma_rxe") { return true }
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var any = false
        for file in ["modules.builtin", "modules.dep"] {
            guard let bytes = try? readFileBytes("/lib/modules/\(release)/\(file)", limit: 16 << 20) else { continue }
            any = true
            if String(decoding: bytes, as: UTF8.self).contains("rdma_rxe.ko") { return true }
        }
        return any ? false : nil
    }

    static func readLine(_ path: String) -> String? {
        guard let bytes = try? readFileBytes(path, limit: 4096) else { return nil }
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func memlock() -> MemlockFacts {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0 else {
            return MemlockFacts(soft: nil, hard: nil, capIPCLock: hasCapability(14))
        }
        func value(_ v: rlim_t) -> UInt64? { v == rlim_t.max ? nil : UInt64(v) }  // rlim_t.max: RLIM_INFINITY
        return MemlockFacts(soft: value(limit.rlim_cur), hard: value(limit.rlim_max), capIPCLock: hasCapability(14))  // 14: CAP_IPC_LOCK
    }

    /// The Vulkan half of `vkverbs devices`, reduced to what the checks judge.
    static func vulkan(layer: Bool, nic pd: ProtectionDomain?) -> VulkanFacts {
        let survey = VulkanSurvey.collect(layer: layer, nic: pd)
        return VulkanFacts(available: survey.available, note: survey.note, layerFound: survey.layer.found,
                           layerEnabled: survey.layer.enabled, devices: survey.devices.map(deviceFacts))
    }

    static func deviceFacts(_ d: VulkanSurvey.Device) -> VulkanDeviceFacts {
        let r = d.report
        let bar = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue | VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue
        let barHeaps = Set(r.memoryTypes.filter { $0.propertyFlags & bar == bar }.map(\.heapIndex))
        return VulkanDeviceFacts(
            index: r.deviceIndex, name: r.deviceName, type: r.deviceType, vendorID: r.vendorID,
            extensions: VulkanExtensionFacts(
                externalMemoryRDMA: r.extensions.externalMemoryRDMA, externalMemoryDMABuf: r.extensions.externalMemoryDMABuf,
                externalMemoryFD: r.extensions.externalMemoryFD, externalMemoryHost: r.extensions.externalMemoryHost,
                memoryBudget: r.extensions.memoryBudget),
            externalMemoryRDMASource: r.externalMemoryRDMASource, rdmaCapableTypes: r.rdmaCapableMemoryTypes,
            rdmaCapableAvailable: r.heaps.filter { r.rdmaCapableHeaps.contains($0.index) }.reduce(0) { $0 + $1.available },
            budgetSource: r.budgetSource,
            barBytes: r.heaps.filter { barHeaps.contains($0.index) }.map(\.size).max(),
            deviceLocalBytes: r.heaps.filter(\.deviceLocal).map(\.size).max() ?? 0,
            chosen: d.automaticChoice.strategy,
            rejected: Dictionary(d.automaticChoice.rejected.map { ($0.strategy.rawValue, $0.reason) }) { first, _ in first },
            choiceError: d.automaticChoice.error, nicConsidered: d.automaticChoice.nicDevice != nil)
    }
}
