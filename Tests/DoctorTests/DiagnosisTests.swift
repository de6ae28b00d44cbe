import Doctor
import Foundation
import Verbs
import VulkanMemory
import XCTest

/// Every verdict and cause of `Diagnosis.diagnose`, from facts stated here: the machines the
/// project meets (the development host without RDMA, the fabric's rxe guest, the H200 without
/// an RDMA device or the NV extension) and each way a link breaks.
final class DiagnosisTests: XCTestCase {
    // MARK: machines

    static let ipv4GID = GIDFacts(index: 1, type: .roceV2, address: "10.0.2.15", linkLocal: false, ipv4: true)
    static let linkLocalGID = GIDFacts(index: 0, type: .roceV2, address: "fe80::5054:ff:fe12:3456", linkLocal: true, ipv4: false)

    static func rxePort(state: PortState = .active, gids: [GIDFacts] = [linkLocalGID, ipv4GID], active: Int = 1024) -> PortFacts {
        PortFacts(number: 1, state: state, linkLayer: .ethernet, activeMTU: active, maxMTU: 4096, gids: gids, netdev: "va", netdevMTU: 1500)
    }

    static func fabric(port: PortFacts = rxePort(), cm: CMFacts? = nil) -> RDMAFacts {
        RDMAFacts(kernelCore: true, softRoCEAvailable: true, kernelDevices: ["rxe0"], uverbsPresent: true,
                  modules: ["ib_core", "rdma_rxe"],
                  devices: [RDMADeviceFacts(name: "rxe0", ports: [port],
                                            odp: OnDemandPaging(isSupported: false, implicit: false, reliableConnected: []))],
                  cm: cm ?? CMFacts(deviceFile: true, address: "10.0.2.15", bound: true, boundDevice: "rxe0"),
                  dmaBuf: .unsupported(errno: EOPNOTSUPP), dmaBufDevice: "rxe0")
    }

    static let noKernelRDMA = RDMAFacts(kernelCore: false, softRoCEAvailable: nil)
    static let h200RDMA = RDMAFacts(kernelCore: true, softRoCEAvailable: false, modules: ["ib_core"],
                                    cm: CMFacts(deviceFile: true, bound: true))

    static func device(_ type: String = "cpu", chosen: MemoryStrategy? = .hostPointerImport, vendor: UInt32 = 0x10005,
                       extensions: VulkanExtensionFacts = VulkanExtensionFacts(externalMemoryFD: true, externalMemoryHost: true),
                       source: ExternalMemoryRDMASource? = nil, bar: UInt64? = 2 << 30, local: UInt64 = 2 << 30) -> VulkanDeviceFacts {
        VulkanDeviceFacts(index: 0, name: type == "cpu" ? "llvmpipe (LLVM 15.0.6, 256 bits)" : "NVIDIA H200", type: type, vendorID: vendor,
                          extensions: extensions, externalMemoryRDMASource: source,
                          rdmaCapableTypes: source == nil ? [] : [0], rdmaCapableAvailable: source == nil ? 0 : 1 << 30,
                          budgetSource: .heapSize, barBytes: bar, deviceLocalBytes: local, chosen: chosen,
                          rejected: chosen == .hostPointerImport ? ["rdmaAddress": "no VK_NV_external_memory_rdma", "dmaBuf": "no dma-buf"] : [:],
                          choiceError: chosen == nil ? "no strategy worked" : nil, nicConsidered: true)
    }

    static let lavapipe = VulkanFacts(available: true, layerFound: false, devices: [device()])
    static let h200Vulkan = VulkanFacts(available: true, devices: [device("discreteGPU", vendor: 0x10de, bar: 140 << 30, local: 140 << 30)])
    static let noVulkan = VulkanFacts(available: false, note: "no Vulkan driver: the loader lists no physical device")
    static let unlimited = MemlockFacts(soft: nil, hard: nil, capIPCLock: false)

    func diagnose(_ rdma: RDMAFacts, _ vulkan: VulkanFacts = lavapipe, memlock: MemlockFacts = unlimited,
                  timedOut: [String] = []) -> Diagnosis {
        Diagnosis.diagnose(DoctorFacts(rdma: rdma, memlock: memlock, vulkan: vulkan, timedOut: timedOut, probeTimeout: 10))
    }

    func check(_ d: Diagnosis, _ id: String, file: StaticString = #filePath, line: UInt = #line) throws -> DoctorCheck {
        try XCTUnwrap(d.check(id), "no check \(id) in \(d.checks.map(\.id))", file: file, line: line)
    }

    // MARK: verdicts

    func testFabricWithLavapipeIsDirect() throws {
        let d = diagnose(Self.fabric())
        XCTAssertEqual(d.verdict, .direct, d.text)
        XCTAssertEqual(d.exitStatus, 0)
        for id in ["rdma.devices", "rdma.ports", "rdma.gids", "rdma.cm", "memlock", "vulkan.devices", "vulkan.strategy[0]"] {
            XCTAssertEqual(try check(d, id).status, .ok, id)
        }
        XCTAssertTrue(d.summary.contains("hostPointerImport"), d.summary)
        XCTAssertFalse(d.checks.contains { $0.status == .fail }, d.text)
    }

    func testHostWithoutRDMAKernel() throws {
        let d = diagnose(Self.noKernelRDMA)
        XCTAssertEqual(d.verdict, .noRDMA)
        XCTAssertEqual(d.exitStatus, 3)
        let devices = try check(d, "rdma.devices")
        XCTAssertEqual(devices.status, .fail)
        XCTAssertTrue(devices.cause?.contains("CONFIG_INFINIBAND") == true, devices.cause ?? "")
        XCTAssertTrue(devices.fix?.contains("rdma_rxe") == true)
        XCTAssertEqual(try check(d, "rdma.ports").status, .skip)
        XCTAssertEqual(try check(d, "rdma.cm").status, .fail)  // No /dev/infiniband/rdma_cm either.
        XCTAssertTrue(d.summary.contains("RDMA devices"), d.summary)
    }

    func testH200WithoutRDMADeviceOrNVExtension() throws {
        let d = diagnose(Self.h200RDMA, Self.h200Vulkan)
        XCTAssertEqual(d.verdict, .noRDMA)
        let devices = try check(d, "rdma.devices")
        XCTAssertTrue(devices.cause?.contains("CONFIG_RDMA_RXE") == true, devices.cause ?? "")
        XCTAssertEqual(try check(d, "rdma.cm").status, .ok)  // The wildcard bind works without a device.
        let ext = try check(d, "vulkan.extensions[0]")
        XCTAssertEqual(ext.status, .info)
        XCTAssertTrue(ext.cause?.contains("VK_NV_external_memory_rdma") == true)
        let peer = try check(d, "nic.peer-memory")
        XCTAssertTrue(peer.fix?.contains("nvidia_peermem") == true, peer.fix ?? "")
        XCTAssertEqual(try check(d, "vulkan.bar[0]").status, .ok)
    }

    func testDiscreteGPUThroughHostMemory() throws {
        let d = diagnose(Self.fabric(), Self.h200Vulkan)
        XCTAssertEqual(d.verdict, .throughHost)
        XCTAssertEqual(d.exitStatus, 2)
        let s = try check(d, "vulkan.strategy[0]")
        XCTAssertEqual(s.status, .info)
        XCTAssertTrue(s.cause?.contains("across the bus") == true)
    }

    func testStagedOnlyIsThroughHostWithAWarning() throws {
        let vulkan = VulkanFacts(available: true, devices: [Self.device("discreteGPU", chosen: .staged, vendor: 0x1002)])
        let d = diagnose(Self.fabric(), vulkan)
        XCTAssertEqual(d.verdict, .throughHost)
        XCTAssertEqual(try check(d, "vulkan.strategy[0]").status, .warn)
        XCTAssertTrue(d.summary.contains("copy"), d.summary)
        XCTAssertTrue(try check(d, "nic.peer-memory").fix?.contains("ROCm") == true)
    }

    func testDriverRDMAAddressWithPeerMemoryIsDirect() throws {
        var rdma = Self.fabric()
        rdma.peerMemoryClients = ["/sys/module/nvidia_peermem/version 580.1"]
        let ext = VulkanExtensionFacts(externalMemoryRDMA: true, externalMemoryFD: true, externalMemoryHost: true)
        let vulkan = VulkanFacts(available: true, devices: [Self.device("discreteGPU", chosen: .rdmaAddress, vendor: 0x10de,
                                                                        extensions: ext, source: .driver)])
        let d = diagnose(rdma, vulkan)
        XCTAssertEqual(d.verdict, .direct)
        XCTAssertEqual(try check(d, "nic.peer-memory").status, .ok)
        XCTAssertEqual(try check(d, "vulkan.extensions[0]").status, .ok)
        XCTAssertEqual(try check(d, "vulkan.rdma-memory[0]").status, .ok)
    }

    func testEmulatedRDMAAddressSaysSo() throws {
        let ext = VulkanExtensionFacts(externalMemoryRDMA: true, externalMemoryFD: true, externalMemoryHost: true)
        let vulkan = VulkanFacts(available: true, layerFound: true, layerEnabled: true,
                                 devices: [Self.device(chosen: .rdmaAddress, extensions: ext, source: .vkverbsLayer)])
        let d = diagnose(Self.fabric(), vulkan)
        XCTAssertEqual(d.verdict, .direct)
        XCTAssertTrue(d.summary.contains("emulation layer"), d.summary)
        XCTAssertEqual(try check(d, "vulkan.layer").status, .ok)
    }

    func testNoVulkanIsHostMemoryOnly() throws {
        let d = diagnose(Self.fabric(), Self.noVulkan)
        XCTAssertEqual(d.verdict, .throughHost)
        let v = try check(d, "vulkan.devices")
        XCTAssertEqual(v.status, .fail)
        XCTAssertTrue(v.fix?.contains("mesa-vulkan-drivers") == true)
        XCTAssertTrue(d.summary.contains("no Vulkan device"), d.summary)
    }

    func testNoStrategyWorked() throws {
        let vulkan = VulkanFacts(available: true, devices: [Self.device("discreteGPU", chosen: nil)])
        let d = diagnose(Self.fabric(), vulkan)
        XCTAssertEqual(d.verdict, .throughHost)
        XCTAssertEqual(try check(d, "vulkan.strategy[0]").status, .fail)
    }

    // MARK: RDMA links

    func testKernelDevicesWithoutUverbs() throws {
        let rdma = RDMAFacts(kernelCore: true, kernelDevices: ["mlx5_0"], uverbsPresent: false)
        let c = try check(diagnose(rdma), "rdma.devices")
        XCTAssertEqual(c.status, .fail)
        XCTAssertEqual(c.fix, "`modprobe ib_uverbs`")
    }

    func testKernelDevicesWithoutProvider() throws {
        let rdma = RDMAFacts(kernelCore: true, kernelDevices: ["mlx5_0"], uverbsPresent: true)
        let c = try check(diagnose(rdma), "rdma.devices")
        XCTAssertTrue(c.fix?.contains("ibverbs-providers") == true, c.fix ?? "")
    }

    func testDeviceThatCannotBeOpened() throws {
        let rdma = RDMAFacts(kernelCore: true, kernelDevices: ["rxe0"], uverbsPresent: true, deviceErrors: ["rxe0": "EACCES"])
        let d = diagnose(rdma)
        XCTAssertEqual(try check(d, "rdma.devices").status, .fail)
        XCTAssertEqual(d.verdict, .noRDMA)
    }

    func testCoreWithoutDeviceSuggestsSoftRoCE() throws {
        let rdma = RDMAFacts(kernelCore: true, softRoCEAvailable: true, cm: CMFacts(deviceFile: true, bound: true))
        let c = try check(diagnose(rdma), "rdma.devices")
        XCTAssertTrue(c.fix?.contains("rdma link add rxe0 type rxe") == true, c.fix ?? "")
    }

    /// A kernel whose modules and configuration cannot be read (as on the H200's container): the
    /// SoftRoCE hint must not promise a module that may not be there.
    func testCoreWithoutDeviceAndUnknownSoftRoCEHedgesTheHint() throws {
        let c = try check(diagnose(RDMAFacts(kernelCore: true, softRoCEAvailable: nil)), "rdma.devices")
        XCTAssertEqual(c.status, .fail)
        XCTAssertTrue(c.fix?.contains("modinfo rdma_rxe") == true, c.fix ?? "no fix")
        XCTAssertTrue(c.fix?.contains("where this kernel ships rdma_rxe") == true, c.fix ?? "no fix")
        let known = try check(diagnose(RDMAFacts(kernelCore: true, softRoCEAvailable: true)), "rdma.devices")
        XCTAssertFalse(known.fix?.contains("modinfo") == true, known.fix ?? "no fix")
    }

    func testEthernetPortDown() throws {
        let d = diagnose(Self.fabric(port: Self.rxePort(state: .down)))
        let c = try check(d, "rdma.ports")
        XCTAssertEqual(c.status, .fail)
        XCTAssertEqual(c.fix?.hasPrefix("`ip link set va up`"), true, c.fix ?? "")
        XCTAssertEqual(try check(d, "rdma.gids").status, .skip)
        XCTAssertEqual(d.verdict, .noRDMA)
    }

    func testInfiniBandPortWithoutSubnetManager() throws {
        let port = PortFacts(number: 1, state: .initialized, linkLayer: .infiniband, activeMTU: 4096, maxMTU: 4096,
                             gids: [GIDFacts(index: 0, type: .ib, address: "fe80::248a:703:49:aa", linkLocal: true, ipv4: false)])
        let c = try check(diagnose(Self.fabric(port: port)), "rdma.ports")
        XCTAssertTrue(c.fix?.contains("opensm") == true)
    }

    func testInfiniBandLinkLocalGIDIsUsable() throws {
        let port = PortFacts(number: 1, state: .active, linkLayer: .infiniband, activeMTU: 4096, maxMTU: 4096,
                             gids: [GIDFacts(index: 0, type: .ib, address: "fe80::248a:703:49:aa", linkLocal: true, ipv4: false)])
        let d = diagnose(Self.fabric(port: port))
        XCTAssertEqual(try check(d, "rdma.gids").status, .ok)
        XCTAssertEqual(try check(d, "rdma.mtu").status, .ok)
        XCTAssertEqual(d.verdict, .direct)
    }

    func testRoCEWithLinkLocalGIDsOnly() throws {
        let d = diagnose(Self.fabric(port: Self.rxePort(gids: [Self.linkLocalGID])))
        let c = try check(d, "rdma.gids")
        XCTAssertEqual(c.status, .fail)
        XCTAssertTrue(c.found.contains("link-local GIDs only"))
        XCTAssertTrue(c.fix?.contains("ip addr add ADDR/PREFIX dev va") == true, c.fix ?? "")
        XCTAssertEqual(d.verdict, .noRDMA)
    }

    func testEmptyGIDTable() throws {
        let c = try check(diagnose(Self.fabric(port: Self.rxePort(gids: []))), "rdma.gids")
        XCTAssertEqual(c.status, .fail)
        XCTAssertTrue(c.found.contains("empty GID table"))
    }

    func testMTUBelowMaximum() throws {
        let c = try check(diagnose(Self.fabric()), "rdma.mtu")
        XCTAssertEqual(c.status, .info)
        XCTAssertTrue(c.fix?.contains("mtu 9000") == true)
        XCTAssertEqual(try check(diagnose(Self.fabric(port: Self.rxePort(active: 512))), "rdma.mtu").status, .warn)
        XCTAssertEqual(try check(diagnose(Self.fabric(port: Self.rxePort(active: 4096))), "rdma.mtu").status, .ok)
    }

    func testRDMACMMissing() throws {
        let d = diagnose(Self.fabric(cm: CMFacts(deviceFile: false)))
        let c = try check(d, "rdma.cm")
        XCTAssertEqual(c.status, .fail)
        XCTAssertEqual(c.fix, "`modprobe rdma_ucm`")
        XCTAssertEqual(d.verdict, .noRDMA)
    }

    func testRDMACMPermissionAndAddress() throws {
        let denied = try check(diagnose(Self.fabric(cm: CMFacts(deviceFile: true, address: "10.0.2.15", error: "EACCES", errno: EACCES))), "rdma.cm")
        XCTAssertTrue(denied.fix?.contains("run as root") == true)
        let foreign = try check(diagnose(Self.fabric(cm: CMFacts(deviceFile: true, address: "10.0.2.15", error: "x", errno: EADDRNOTAVAIL))), "rdma.cm")
        XCTAssertTrue(foreign.cause?.contains("belongs to no RDMA device") == true)
    }

    func testODP() throws {
        XCTAssertEqual(try check(diagnose(Self.fabric()), "rdma.odp").status, .info)
        var rdma = Self.fabric()
        rdma.devices[0].odp = OnDemandPaging(isSupported: true, implicit: false, reliableConnected: [.send, .receive, .write])
        let c = try check(diagnose(rdma), "rdma.odp")
        XCTAssertEqual(c.status, .ok)
        XCTAssertEqual(c.found, "rxe0: RC send,receive,write")
    }

    func testDMABuf() throws {
        XCTAssertEqual(try check(diagnose(Self.fabric()), "nic.dma-buf").status, .info)
        var rdma = Self.fabric()
        rdma.dmaBuf = .supported
        XCTAssertEqual(try check(diagnose(rdma), "nic.dma-buf").status, .ok)
        XCTAssertEqual(try check(diagnose(Self.noKernelRDMA), "nic.dma-buf").status, .skip)
    }

    // MARK: limits and Vulkan links

    func testMemlock() throws {
        let low = MemlockFacts(soft: 8 << 20, hard: 8 << 20, capIPCLock: false)
        let c = try check(diagnose(Self.fabric(), memlock: low), "memlock")
        XCTAssertEqual(c.status, .warn)
        XCTAssertEqual(c.found, "8 MiB (hard limit 8 MiB)")
        XCTAssertTrue(c.fix?.contains("limits.conf") == true)
        XCTAssertTrue(c.cause?.contains("Couldn't allocate MR") == true)
        let raisable = MemlockFacts(soft: 8 << 20, hard: nil, capIPCLock: false)
        XCTAssertTrue(try check(diagnose(Self.fabric(), memlock: raisable), "memlock").fix?.hasPrefix("`ulimit -l unlimited`") == true)
        XCTAssertEqual(try check(diagnose(Self.fabric(), memlock: MemlockFacts(soft: 8 << 20, hard: 8 << 20, capIPCLock: true)), "memlock").status, .ok)
        // A low limit slows nothing down that works: the verdict stands.
        XCTAssertEqual(diagnose(Self.fabric(), memlock: low).verdict, .direct)
    }

    func testSmallBAR() throws {
        let vulkan = VulkanFacts(available: true, devices: [Self.device("discreteGPU", vendor: 0x10de, bar: 256 << 20, local: 24 << 30)])
        let c = try check(diagnose(Self.fabric(), vulkan), "vulkan.bar[0]")
        XCTAssertEqual(c.status, .info)
        XCTAssertTrue(c.fix?.contains("Re-Size BAR") == true)
        XCTAssertEqual(try check(diagnose(Self.fabric(), VulkanFacts(available: true, devices: [Self.device("discreteGPU", bar: nil)])),
                                 "vulkan.bar[0]").status, .info)
    }

    func testNoZeroCopyExtensionAndNoHostImport() throws {
        let vulkan = VulkanFacts(available: true, devices: [Self.device("discreteGPU", chosen: .staged, extensions: VulkanExtensionFacts())])
        XCTAssertEqual(try check(diagnose(Self.fabric(), vulkan), "vulkan.extensions[0]").status, .warn)
    }

    func testLayer() throws {
        XCTAssertTrue(try check(diagnose(Self.fabric()), "vulkan.layer").fix?.contains("VK_ADD_LAYER_PATH") == true)
        let found = VulkanFacts(available: true, layerFound: true, devices: [Self.device()])
        XCTAssertTrue(try check(diagnose(Self.fabric(), found), "vulkan.layer").fix?.contains("--layer") == true)
    }

    // MARK: hung probes

    func testHungRDMAProbe() throws {
        let d = diagnose(Self.fabric(), timedOut: ["rdma"])
        XCTAssertEqual(d.verdict, .noRDMA)
        let c = try check(d, "rdma.devices")
        XCTAssertTrue(c.found.contains("did not answer within 10 s"), c.found)
    }

    func testHungVulkanProbe() throws {
        let d = diagnose(Self.fabric(), timedOut: ["vulkan"])
        XCTAssertEqual(d.verdict, .throughHost)
        XCTAssertTrue(try check(d, "vulkan.devices").found.contains("did not answer"))
    }

    func testBoundedGivesUpOnAHungBody() {
        let start = Date()
        let hung: Int? = bounded(0.2) { sleep(30); return 1 }
        XCTAssertNil(hung)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertEqual(bounded(30) { 42 }, 42)
    }

    // MARK: output

    func testTextNamesCauseFixAndVerdict() {
        let text = diagnose(Self.noKernelRDMA).text
        XCTAssertTrue(text.contains("[FAIL] RDMA devices: none"), text)
        XCTAssertTrue(text.contains("       cause: "), text)
        XCTAssertTrue(text.contains("       fix:   "), text)
        XCTAssertTrue(text.split(separator: "\n").last?.hasPrefix("verdict: no-rdma (exit 3): no RDMA path") == true, text)
    }

    func testFactsRoundTripThroughJSON() throws {
        let facts = DoctorFacts(rdma: Self.fabric(), memlock: Self.unlimited, vulkan: Self.h200Vulkan)
        let decoded = try JSONDecoder().decode(DoctorFacts.self, from: JSONEncoder().encode(facts))
        XCTAssertEqual(decoded, facts)
        XCTAssertEqual(Diagnosis.diagnose(decoded), Diagnosis.diagnose(facts))
    }

    func testFormatBytes() {
        XCTAssertEqual(formatBytes(512), "512 B")
        XCTAssertEqual(formatBytes(256 << 20), "256 MiB")
        XCTAssertEqual(formatBytes(3 << 29), "1.5 GiB")
    }
}
