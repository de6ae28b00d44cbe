#if canImport(Glibc)
import Glibc
#endif
import Verbs
import VulkanMemory

// The judgement: facts in, checks and a verdict out. No system calls here, so every verdict
// can be reached from a test by stating the facts.

extension Diagnosis {
    /// Pinned memory below this draws a warning: the ping-pong server's default budget.
    public static let memlockWanted: UInt64 = 256 << 20
    /// A discrete GPU's host-visible device-local heap at or below this is the legacy 256 MiB BAR.
    public static let smallBAR: UInt64 = 256 << 20

    public static func diagnose(_ f: DoctorFacts) -> Diagnosis {
        var checks: [DoctorCheck] = []
        let rdma = RDMAJudge(facts: f)
        checks += rdma.checks()
        checks.append(memlockCheck(f.memlock))
        checks += VulkanJudge(facts: f).checks()

        let rdmaWorks = rdma.usablePort != nil && (checks.first { $0.id == "rdma.cm" }?.status ?? .fail) != .fail
            && !f.timedOut.contains("rdma")
        let (verdict, summary) = pathVerdict(f, rdmaWorks: rdmaWorks, firstFailure: checks.first { $0.status == .fail })
        checks.append(DoctorCheck(id: "path", title: "best path", status: verdict == .direct ? .ok : verdict == .noRDMA ? .fail : .warn,
                                  found: summary))
        return Diagnosis(verdict: verdict, summary: summary, checks: checks)
    }

    static func memlockCheck(_ m: MemlockFacts) -> DoctorCheck {
        let title = "locked-memory limit (RLIMIT_MEMLOCK)"
        if m.capIPCLock {
            return DoctorCheck(id: "memlock", title: title, status: .ok, found: "CAP_IPC_LOCK: registrations are not limited")
        }
        guard let soft = m.soft else { return DoctorCheck(id: "memlock", title: title, status: .ok, found: "unlimited") }
        let hard = m.hard.map { formatBytes($0) } ?? "unlimited"
        let found = "\(formatBytes(soft)) (hard limit \(hard))"
        guard soft < memlockWanted else { return DoctorCheck(id: "memlock", title: title, status: .ok, found: found) }
        let raise = m.hard.map { $0 > soft } ?? true
            ? "`ulimit -l unlimited` in the shell that starts vkverbs (the hard limit allows more)"
            : "raise the hard limit: `* - memlock unlimited` in /etc/security/limits.conf (log in again), "
            + "LimitMEMLOCK=infinity for a systemd service, `--ulimit memlock=-1` for a container"
        return DoctorCheck(id: "memlock", title: title, status: .warn, found: found,
                           cause: "every registered buffer is pinned and counted against this limit: registrations beyond "
                            + "\(formatBytes(soft)) in total fail with ENOMEM (\"Couldn't allocate MR\")",
                           fix: raise)
    }

    static func pathVerdict(_ f: DoctorFacts, rdmaWorks: Bool, firstFailure: DoctorCheck?) -> (DoctorVerdict, String) {
        guard rdmaWorks else {
            let why = firstFailure.map { "\($0.title): \($0.cause ?? $0.found)" } ?? "no usable RDMA port"
            return (.noRDMA, "no RDMA path: \(why)")
        }
        let ranked = f.vulkan.devices.compactMap { d -> (Int, VulkanDeviceFacts, MemoryStrategy)? in
            guard let s = d.chosen else { return nil }
            return (strategyRank(s, d), d, s)
        }.sorted { $0.0 < $1.0 }
        guard !f.timedOut.contains("vulkan"), f.vulkan.available, case let (rank, device, strategy)? = ranked.first else {
            let why = f.timedOut.contains("vulkan") ? "the Vulkan probe did not answer"
                : !f.vulkan.available ? "no Vulkan device" : "no memory strategy worked on any Vulkan device"
            return (.throughHost, "RDMA works with host memory only: \(why)")
        }
        let via = "\(strategy.rawValue) on [\(device.index)] \(device.name)"
        let emulated = device.externalMemoryRDMASource == .vkverbsLayer && strategy == .rdmaAddress
            ? " (VK_NV_external_memory_rdma from the emulation layer: host-visible memory underneath)" : ""
        if rank == 0 { return (.direct, "direct: Vulkan memory registered with the NIC without copies, \(via)\(emulated)") }
        if strategy == .staged {
            return (.throughHost, "through host memory: \(via), one copy each way between device memory and a registered staging buffer")
        }
        return (.throughHost, "through host memory: \(via); the GPU reaches the registered memory across the bus")
    }

    /// 0: zero-copy for this device; 1: host memory a discrete GPU reaches over the bus; 2: staged copies.
    static func strategyRank(_ s: MemoryStrategy, _ d: VulkanDeviceFacts) -> Int {
        switch s {
        case .rdmaAddress, .dmaBuf: return 0
        case .hostPointerImport, .hostVisible: return d.memoryIsHostMemory ? 0 : 1
        case .staged: return 2
        }
    }
}

/// The RDMA half of the checks.
struct RDMAJudge {
    let facts: DoctorFacts
    var r: RDMAFacts { facts.rdma }

    /// The first active port with an address rdma_cm can use beyond its link.
    var usablePort: (RDMADeviceFacts, PortFacts)? {
        for d in r.devices {
            for p in d.ports where p.state == .active && p.usableGID != nil { return (d, p) }
        }
        return nil
    }

    func checks() -> [DoctorCheck] {
        if facts.timedOut.contains("rdma") {
            return [DoctorCheck(
                id: "rdma.devices", title: "RDMA devices", status: .fail,
                found: "the RDMA probe did not answer within \(Int(facts.probeTimeout)) s",
                cause: "a device or its driver is wedged (a verbs call or rdma_cm did not return)",
                fix: "look at `dmesg` for the NIC driver's errors; reload the driver or reset the device")]
        }
        var out = [devicesCheck()]
        guard !r.devices.isEmpty else {
            for (id, title) in [("rdma.ports", "ports"), ("rdma.gids", "GIDs"), ("rdma.mtu", "path MTU")] {
                out.append(DoctorCheck(id: id, title: title, status: .skip, found: "no RDMA device"))
            }
            out.append(cmCheck())
            out += nicChecks()
            return out
        }
        out.append(portsCheck())
        out.append(gidsCheck())
        out.append(mtuCheck())
        out.append(cmCheck())
        out.append(odpCheck())
        out += nicChecks()
        return out
    }

    func devicesCheck() -> DoctorCheck {
        let title = "RDMA devices"
        if !r.devices.isEmpty {
            let failed = r.deviceErrors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
            return DoctorCheck(id: "rdma.devices", title: title, status: failed.isEmpty ? .ok : .warn,
                               found: r.devices.map(\.name).joined(separator: ", ") + (failed.isEmpty ? "" : "; not opened: " + failed.joined(separator: "; ")),
                               cause: failed.isEmpty ? nil : "the device is listed but could not be opened or queried",
                               fix: failed.isEmpty ? nil : "check the permissions of /dev/infiniband/uverbs* and `dmesg`")
        }
        if !r.deviceErrors.isEmpty {
            return DoctorCheck(
                id: "rdma.devices", title: title, status: .fail,
                found: "listed but not opened: " + r.deviceErrors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "; "),
                cause: "the devices exist but this process cannot open them (permissions, or a driver error)",
                fix: "check the permissions of /dev/infiniband/uverbs* (run as root, or join the group that owns them) and `dmesg`")
        }
        if !r.kernelDevices.isEmpty {
            let devices = r.kernelDevices.joined(separator: ", ")
            if !r.uverbsPresent {
                return DoctorCheck(id: "rdma.devices", title: title, status: .fail,
                                   found: "the kernel has \(devices), but there is no /dev/infiniband/uverbs*",
                                   cause: "ib_uverbs is not loaded, so user space cannot reach the devices",
                                   fix: "`modprobe ib_uverbs`")
            }
            return DoctorCheck(id: "rdma.devices", title: title, status: .fail,
                               found: "the kernel has \(devices), but libibverbs lists none",
                               cause: "the user-space driver (provider) for this NIC is missing",
                               fix: "install rdma-core's providers (Debian: `apt-get install ibverbs-providers`)")
        }
        var softRoCE = "`modprobe rdma_rxe && rdma link add rxe0 type rxe netdev IFACE` (SoftRoCE over an Ethernet interface)"
        if r.softRoCEAvailable == nil {
            // Neither loaded, built in nor listed among the modules we could read: say it may be missing.
            softRoCE = "where this kernel ships rdma_rxe (this machine did not say; `modinfo rdma_rxe` tells), " + softRoCE
        }
        if !r.kernelCore {
            return DoctorCheck(id: "rdma.devices", title: title, status: .fail,
                               found: "none: this kernel has no RDMA core (no /sys/class/infiniband, no ib_core)",
                               cause: "the kernel has no RDMA support loaded, or was built without it (CONFIG_INFINIBAND)",
                               fix: "load the NIC's RDMA driver (e.g. `modprobe mlx5_ib`) or \(softRoCE); a kernel without "
                                + "CONFIG_INFINIBAND needs another kernel (the project's fabric runs one in QEMU: scripts/fabric)")
        }
        let noRXE = r.softRoCEAvailable == false
        return DoctorCheck(id: "rdma.devices", title: title, status: .fail,
                           found: "none: the kernel's RDMA core is there, but it has no device",
                           cause: "no NIC with an RDMA driver is bound, and no software device was created"
                            + (noRXE ? " (and this kernel has no rdma_rxe: CONFIG_RDMA_RXE is not set)" : ""),
                           fix: noRXE ? "load the NIC's RDMA driver (e.g. `modprobe mlx5_ib`), or use a kernel with rdma_rxe or siw"
                            : "load the NIC's RDMA driver (e.g. `modprobe mlx5_ib`), or \(softRoCE)")
    }

    func portsCheck() -> DoctorCheck {
        let all = r.devices.flatMap { d in d.ports.map { (d, $0) } }
        let text = all.map { "\($0.0.name) port \($0.1.number): \($0.1.state.rawValue) (\($0.1.linkLayer.rawValue))" }.joined(separator: ", ")
        if all.contains(where: { $0.1.state == .active }) {
            return DoctorCheck(id: "rdma.ports", title: "ports", status: .ok, found: text)
        }
        let (cause, fix): (String, String)
        if case let (_, p)? = all.first(where: { $0.1.linkLayer == .infiniband && ($0.1.state == .initialized || $0.1.state == .armed) }) {
            cause = "the link is up but no subnet manager has configured port \(p.number)"
            fix = "run a subnet manager on the fabric (`opensm`, or the switch's)"
        } else if case let (_, p)? = all.first(where: { $0.1.linkLayer == .ethernet }) {
            cause = "the Ethernet link under the port is down" + (p.netdev.map { " (\($0))" } ?? "")
            fix = "`ip link set \(p.netdev ?? "IFACE") up`, and check the cable or the peer port"
        } else {
            cause = "no port has a link: cable, switch port or peer down"
            fix = "check the cable and the switch port; `ibstat` shows the physical state"
        }
        return DoctorCheck(id: "rdma.ports", title: "ports", status: .fail, found: text.isEmpty ? "no ports" : text, cause: cause, fix: fix)
    }

    func gidsCheck() -> DoctorCheck {
        let active = r.devices.flatMap { d in d.ports.filter { $0.state == .active }.map { (d, $0) } }
        guard !active.isEmpty else { return DoctorCheck(id: "rdma.gids", title: "GIDs", status: .skip, found: "no active port") }
        if case let (d, p)? = usablePort, let gid = p.usableGID {
            return DoctorCheck(id: "rdma.gids", title: "GIDs", status: .ok,
                               found: "\(d.name) port \(p.number): gid[\(gid.index)] \(gid.type.rawValue) \(gid.address)")
        }
        let (d, p) = active[0]
        if p.gids.isEmpty {
            return DoctorCheck(id: "rdma.gids", title: "GIDs", status: .fail, found: "\(d.name) port \(p.number): empty GID table",
                               cause: "the port has no address at all" + (p.netdev == nil ? " (no network interface under it)" : ""),
                               fix: "`ip addr add ADDR/PREFIX dev \(p.netdev ?? "IFACE")`; RoCE GIDs follow the interface's addresses")
        }
        return DoctorCheck(id: "rdma.gids", title: "GIDs", status: .fail,
                           found: "\(d.name) port \(p.number): link-local GIDs only (" + p.gids.map(\.address).joined(separator: ", ") + ")",
                           cause: "the interface \(p.netdev ?? "under the port") has no IPv4 or global IPv6 address, so rdma_cm cannot "
                            + "resolve a route to another host (\"Failed to modify QP to RTR\", RDMA_CM_EVENT_ADDR_ERROR)",
                           fix: "`ip addr add ADDR/PREFIX dev \(p.netdev ?? "IFACE")`; a RoCE v2 GID appears for it at once")
    }

    func mtuCheck() -> DoctorCheck {
        let firstActive: (RDMADeviceFacts, PortFacts)? = r.devices.flatMap { d in d.ports.map { (d, $0) } }.first { $0.1.state == .active }
        guard case let (d, p)? = usablePort ?? firstActive, let active = p.activeMTU
        else { return DoctorCheck(id: "rdma.mtu", title: "path MTU", status: .skip, found: "no active port") }
        let max = p.maxMTU ?? active
        let found = "\(d.name) port \(p.number): active \(active), max \(max)" + (p.netdevMTU.map { ", \(p.netdev ?? "interface") MTU \($0)" } ?? "")
        guard active < max else { return DoctorCheck(id: "rdma.mtu", title: "path MTU", status: .ok, found: found) }
        let cause = p.linkLayer == .ethernet
            ? "RoCE uses the largest IB MTU that fits the interface's MTU less its headers" + (p.netdevMTU.map { " (\($0))" } ?? "")
            : "the subnet manager or the peer limits the path MTU"
        let fix = p.linkLayer == .ethernet
            ? "`ip link set \(p.netdev ?? "IFACE") mtu 9000` on both hosts and the switch, for a \(max)-byte path MTU"
            : "raise the MTU in the subnet manager's partition configuration"
        return DoctorCheck(id: "rdma.mtu", title: "path MTU", status: active < 1024 ? .warn : .info, found: found,
                           cause: "messages travel in \(active)-byte packets: \(cause)", fix: fix)
    }

    func cmCheck() -> DoctorCheck {
        let c = r.cm
        let title = "rdma_cm"
        guard c.deviceFile else {
            return DoctorCheck(id: "rdma.cm", title: title, status: .fail,
                               found: "no /dev/infiniband/rdma_cm",
                               cause: "rdma_ucm is not loaded: connections (rdma_cm, which vkverbs uses) cannot be made",
                               fix: "`modprobe rdma_ucm`")
        }
        if let error = c.error {
            let code = c.errno ?? 0
            let (cause, fix): (String, String)
            if code == EACCES || code == EPERM {
                cause = "this user may not open /dev/infiniband/rdma_cm"
                fix = "run as root, or give the user access to /dev/infiniband/rdma_cm (udev rule, group `rdma`)"
            } else if code == EADDRNOTAVAIL || code == ENODEV {
                cause = "\(c.address ?? "the address") belongs to no RDMA device: its interface has no RDMA link"
                fix = "bind to the address of the RDMA device's interface (`rdma link` shows which interface it sits on)"
            } else {
                cause = "rdma_cm refused: \(error)"
                fix = "`dmesg` and `rdma link` show the device's state"
            }
            return DoctorCheck(id: "rdma.cm", title: title, status: .fail, found: "binding \(c.address ?? "*") failed: \(error)", cause: cause, fix: fix)
        }
        guard c.bound else { return DoctorCheck(id: "rdma.cm", title: title, status: .skip, found: "/dev/infiniband/rdma_cm present; not tried") }
        let on = c.boundDevice.map { " on \($0)" } ?? ""
        if c.address != nil && c.boundDevice == nil {
            return DoctorCheck(id: "rdma.cm", title: title, status: .warn, found: "bound \(c.address!) but to no RDMA device",
                               cause: "rdma_cm did not tie the address to a device", fix: "`rdma link` shows which interface each device sits on")
        }
        return DoctorCheck(id: "rdma.cm", title: title, status: .ok,
                           found: "/dev/infiniband/rdma_cm; a listener bound \(c.address ?? "the wildcard address")\(on)")
    }

    func odpCheck() -> DoctorCheck {
        let parts = r.devices.map { d -> String in
            guard let odp = d.odp else { return "\(d.name): not queried (\(d.odpError ?? "unknown"))" }
            guard odp.isSupported else { return "\(d.name): none" }
            return "\(d.name): " + (odp.implicit ? "implicit, " : "") + "RC \(odp.reliableConnected)"
        }
        let any = r.devices.contains { $0.odp?.isSupported == true }
        return DoctorCheck(id: "rdma.odp", title: "on-demand paging (ODP)", status: any ? .ok : .info, found: parts.joined(separator: "; "),
                           cause: any ? nil : "memory must be pinned when it is registered (optional: ODP only saves pinning)",
                           fix: any ? nil : "nothing needed; NICs with ODP: mlx5, and rxe on recent kernels (7.3 reports it; 6.1 does not)")
    }

    func nicChecks() -> [DoctorCheck] {
        var out: [DoctorCheck] = []
        let gpus = facts.vulkan.devices.filter { $0.type == "discreteGPU" }
        if !r.peerMemoryClients.isEmpty {
            out.append(DoctorCheck(id: "nic.peer-memory", title: "GPU peer-memory client", status: .ok,
                                   found: r.peerMemoryClients.joined(separator: ", ")))
        } else if let gpu = gpus.first {
            let module = gpu.vendorID == 0x10de ? "`modprobe nvidia_peermem` (NVIDIA driver >= 470)"
                : gpu.vendorID == 0x1002 ? "the ROCm kernel driver's peer-direct support (amdgpu with PeerDirect)"
                : "the GPU vendor's peer-memory module"
            out.append(DoctorCheck(id: "nic.peer-memory", title: "GPU peer-memory client", status: .info,
                                   found: "none (no nvidia_peermem, nv_peer_mem or ib_peer_mem; nothing in /sys/kernel/mm/memory_peers)",
                                   cause: "ibv_reg_mr cannot register GPU device memory addresses, so the rdma-address path "
                                    + "(VK_NV_external_memory_rdma from the driver) cannot reach the NIC",
                                   fix: module))
        } else {
            out.append(DoctorCheck(id: "nic.peer-memory", title: "GPU peer-memory client", status: .info,
                                   found: "none (needed only for a discrete GPU's device memory; there is none)"))
        }
        switch r.dmaBuf {
        case nil:
            out.append(DoctorCheck(id: "nic.dma-buf", title: "dma-buf memory regions", status: .skip, found: "not probed (no RDMA device)"))
        case .supported?:
            out.append(DoctorCheck(id: "nic.dma-buf", title: "dma-buf memory regions", status: .ok,
                                   found: "\(r.dmaBufDevice ?? "the NIC") accepts ibv_reg_dmabuf_mr"))
        case let support?:
            out.append(DoctorCheck(id: "nic.dma-buf", title: "dma-buf memory regions", status: .info,
                                   found: "\(r.dmaBufDevice ?? "the NIC"): \(support)",
                                   cause: "the NIC's driver does not take dma-buf regions (rxe and siw never do; mlx5 does from Linux 5.12 "
                                    + "with rdma-core >= 34), so the dma-buf path cannot reach it",
                                   fix: "a NIC and kernel with dma-buf MRs for that path; otherwise the host-memory paths work"))
        }
        return out
    }
}

/// The Vulkan half of the checks, one set per device.
struct VulkanJudge {
    let facts: DoctorFacts
    var v: VulkanFacts { facts.vulkan }

    func checks() -> [DoctorCheck] {
        if facts.timedOut.contains("vulkan") {
            return [DoctorCheck(id: "vulkan.devices", title: "Vulkan devices", status: .fail,
                                found: "the Vulkan probe did not answer within \(Int(facts.probeTimeout)) s",
                                cause: "the Vulkan driver hung while creating an instance or a device",
                                fix: "check the GPU driver (`dmesg`, nvidia-smi); VK_LOADER_DEBUG=all shows which driver the loader loads")]
        }
        guard v.available else {
            let note = v.note ?? "no Vulkan device"
            return [DoctorCheck(id: "vulkan.devices", title: "Vulkan devices", status: .fail, found: note,
                                cause: "the Vulkan loader found no driver (ICD) with a device, so GPU memory cannot be used",
                                fix: "install the GPU's Vulkan driver (NVIDIA: the driver's ICD, pointed at by VK_DRIVER_FILES if the "
                                    + "loader does not find it; Mesa: `apt-get install mesa-vulkan-drivers`, which also has lavapipe)"),
                    layerCheck()]
        }
        var out = [DoctorCheck(id: "vulkan.devices", title: "Vulkan devices", status: .ok,
                               found: v.devices.map { "[\($0.index)] \($0.name) (\($0.type))" }.joined(separator: ", ")
                                + (v.note.map { "; \($0)" } ?? ""))]
        for d in v.devices {
            out.append(extensionsCheck(d))
            out.append(memoryCheck(d))
            out.append(barCheck(d))
            out.append(choiceCheck(d))
        }
        out.append(layerCheck())
        return out
    }

    func extensionsCheck(_ d: VulkanDeviceFacts) -> DoctorCheck {
        let e = d.extensions
        func yes(_ b: Bool) -> String { b ? "yes" : "no" }
        let source = d.externalMemoryRDMASource.map { " (\($0.rawValue))" } ?? ""
        let found = "VK_NV_external_memory_rdma \(yes(e.externalMemoryRDMA))\(source), VK_EXT_external_memory_dma_buf \(yes(e.externalMemoryDMABuf)), "
            + "VK_KHR_external_memory_fd \(yes(e.externalMemoryFD)), VK_EXT_external_memory_host \(yes(e.externalMemoryHost)), "
            + "VK_EXT_memory_budget \(yes(e.memoryBudget))"
        let id = "vulkan.extensions[\(d.index)]"
        let title = "[\(d.index)] device extensions"
        if (e.externalMemoryRDMA && d.externalMemoryRDMASource == .driver) || e.externalMemoryDMABuf {
            return DoctorCheck(id: id, title: title, status: .ok, found: found)
        }
        if !e.externalMemoryHost && d.type != "cpu" && !d.memoryIsHostMemory && !e.externalMemoryRDMA {
            return DoctorCheck(id: id, title: title, status: .warn, found: found,
                               cause: "no zero-copy extension and no host-pointer import: GPU memory reaches the NIC only through "
                                + "host-visible memory or staged copies",
                               fix: "a newer driver; NVIDIA exposes VK_NV_external_memory_rdma on some platforms only")
        }
        let layer = e.externalMemoryRDMA ? "" : "; the emulation layer provides VK_NV_external_memory_rdma for testing (`--layer`)"
        return DoctorCheck(id: id, title: title, status: .info, found: found,
                           cause: "the driver offers neither VK_NV_external_memory_rdma nor dma-buf export, so device-local memory "
                            + "cannot be registered directly (NVIDIA's Linux driver lacks both on most systems; lavapipe has neither)",
                           fix: "host-import or host-visible memory (the automatic choice takes them)\(layer)")
    }

    func memoryCheck(_ d: VulkanDeviceFacts) -> DoctorCheck {
        let id = "vulkan.rdma-memory[\(d.index)]", title = "[\(d.index)] RDMA-capable memory types and budget"
        let budget = d.budgetSource == .memoryBudgetExtension ? "budget" : "heap size (no VK_EXT_memory_budget)"
        guard !d.rdmaCapableTypes.isEmpty else {
            return DoctorCheck(id: id, title: title, status: .info, found: "none",
                               cause: "no memory type has VK_MEMORY_PROPERTY_RDMA_CAPABLE_BIT_NV (it comes with VK_NV_external_memory_rdma)",
                               fix: "none needed unless the rdma-address path is wanted: the other strategies do not use such types")
        }
        let found = "types " + d.rdmaCapableTypes.map(String.init).joined(separator: ", ") + ", \(formatBytes(d.rdmaCapableAvailable)) available (\(budget))"
        if d.rdmaCapableAvailable < 64 << 20 {
            return DoctorCheck(id: id, title: title, status: .warn, found: found,
                               cause: "little memory is left in the heaps of the RDMA-capable types", fix: "free GPU memory, or use smaller buffers")
        }
        return DoctorCheck(id: id, title: title, status: .ok, found: found)
    }

    func barCheck(_ d: VulkanDeviceFacts) -> DoctorCheck {
        let id = "vulkan.bar[\(d.index)]", title = "[\(d.index)] BAR (device-local, host-visible heap)"
        guard let bar = d.barBytes else {
            return DoctorCheck(id: id, title: title, status: .info, found: "no device-local memory the host can map",
                               cause: d.type == "discreteGPU" ? "the driver maps no part of device memory for the CPU" : nil,
                               fix: d.type == "discreteGPU" ? "enable Resizable BAR (\"Above 4G decoding\" and \"Re-Size BAR\" in the firmware)" : nil)
        }
        let found = "\(formatBytes(bar)) of \(formatBytes(d.deviceLocalBytes)) device-local"
        if d.type == "discreteGPU" && bar <= Diagnosis.smallBAR && d.deviceLocalBytes > bar {
            return DoctorCheck(id: id, title: title, status: .info, found: found,
                               cause: "Resizable BAR is off: the CPU sees only a \(formatBytes(bar)) window of device memory",
                               fix: "enable \"Above 4G decoding\" and \"Re-Size BAR\" in the firmware (a BIOS setting; a VM needs it passed through)")
        }
        return DoctorCheck(id: id, title: title, status: .ok, found: found)
    }

    func choiceCheck(_ d: VulkanDeviceFacts) -> DoctorCheck {
        let id = "vulkan.strategy[\(d.index)]", title = "[\(d.index)] automatic memory strategy"
        let nic = d.nicConsidered ? "NIC considered" : "no NIC considered"
        let rejected = d.rejected.sorted { rank($0.key) < rank($1.key) }.map { "not \($0.key): \($0.value)" }
        guard let s = d.chosen else {
            return DoctorCheck(id: id, title: title, status: .fail, found: "none (\(nic)); " + rejected.joined(separator: "; "),
                               cause: d.choiceError ?? "no strategy could allocate memory the NIC can register",
                               fix: "see each strategy's reason above; `vkverbs vulkan check` tries each one on its own")
        }
        let found = "\(s.rawValue) (\(nic))" + (rejected.isEmpty ? "" : "; " + rejected.joined(separator: "; "))
        switch Diagnosis.strategyRank(s, d) {
        case 0: return DoctorCheck(id: id, title: title, status: .ok, found: found)
        case 1: return DoctorCheck(id: id, title: title, status: .info, found: found,
                                   cause: "the GPU reaches this memory across the bus: its own memory cannot be registered here",
                                   fix: "for zero copies: a driver with VK_NV_external_memory_rdma plus a peer-memory client, or dma-buf "
                                    + "export plus a NIC with dma-buf MRs")
        default: return DoctorCheck(id: id, title: title, status: .warn, found: found,
                                    cause: "only staged copies work: every transfer is copied once between device memory and a staging buffer",
                                    fix: "a driver with VK_EXT_external_memory_host or host-visible memory avoids the copy")
        }
    }

    private func rank(_ name: String) -> Int { MemoryStrategy.allCases.firstIndex { $0.rawValue == name } ?? 99 }

    func layerCheck() -> DoctorCheck {
        let title = "emulation layer VK_LAYER_VKVERBS_rdma_emulation"
        if v.layerEnabled {
            return DoctorCheck(id: "vulkan.layer", title: title, status: .ok, found: "found and enabled: VK_NV_external_memory_rdma is emulated")
        }
        if v.layerFound {
            return DoctorCheck(id: "vulkan.layer", title: title, status: .info, found: "found, not enabled",
                               fix: "`--layer` (or VKVERBS_RDMA_LAYER=1) turns it on, for testing the rdma-address path")
        }
        return DoctorCheck(id: "vulkan.layer", title: title, status: .info, found: "not found by the loader",
                           cause: "only needed to exercise the rdma-address path where the driver lacks it",
                           fix: "`make vulkan-layer`, then `export VK_ADD_LAYER_PATH=$PWD/.build/vulkan-layer`")
    }
}

extension PortFacts {
    /// The GID rdma_cm can reach other hosts with: any on InfiniBand; on Ethernet a RoCE v2 one
    /// that is not link-local, IPv4-mapped first.
    public var usableGID: GIDFacts? {
        if linkLayer == .infiniband { return gids.first }
        let routable = gids.filter { !$0.linkLocal }
        return routable.first { $0.type == .roceV2 && $0.ipv4 } ?? routable.first { $0.type == .roceV2 } ?? routable.first
    }
}
