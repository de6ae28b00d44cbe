import Verbs
import VulkanMemory

/// Everything `vkverbs doctor` read off the machine, before any judgement: the input of
/// `Diagnosis.diagnose`. Plain values, so a test can state any machine it likes.
public struct DoctorFacts: Codable, Sendable, Equatable {
    public var rdma: RDMAFacts
    public var memlock: MemlockFacts
    public var vulkan: VulkanFacts
    /// Probes that did not answer within their bound ("rdma", "vulkan"), and the bound in seconds.
    public var timedOut: [String]
    public var probeTimeout: Double

    public init(rdma: RDMAFacts, memlock: MemlockFacts, vulkan: VulkanFacts, timedOut: [String] = [], probeTimeout: Double = 10) {
        self.rdma = rdma
        self.memlock = memlock
        self.vulkan = vulkan
        self.timedOut = timedOut
        self.probeTimeout = probeTimeout
    }
}

/// The RDMA side: the kernel, the devices libibverbs lists, rdma_cm, the NIC's memory paths.
public struct RDMAFacts: Codable, Sendable, Equatable {
    /// /sys/module/ib_core or /sys/class/infiniband exists: the kernel has its RDMA core.
    public var kernelCore: Bool
    /// Whether this kernel ships SoftRoCE (rdma_rxe loaded, built in or among its modules); nil: unknown.
    public var softRoCEAvailable: Bool?
    /// Entries of /sys/class/infiniband: the devices the kernel has.
    public var kernelDevices: [String]
    /// /dev/infiniband/uverbs* exist (ib_uverbs is loaded).
    public var uverbsPresent: Bool
    /// Loaded modules among those the chain needs (/proc/modules).
    public var modules: [String]
    /// `ibv_get_device_list`: what user space can open.
    public var devices: [RDMADeviceFacts]
    /// Devices listed but not opened or queried, with the error.
    public var deviceErrors: [String: String]
    public var cm: CMFacts
    /// GPU peer-memory clients: the sysfs version files found and the modules loaded.
    public var peerMemoryClients: [String]
    /// The project's dma-buf probe on the first device; nil when there was no device to probe.
    public var dmaBuf: DMABufSupport?
    public var dmaBufDevice: String?

    public init(kernelCore: Bool, softRoCEAvailable: Bool? = nil, kernelDevices: [String] = [], uverbsPresent: Bool = false,
                modules: [String] = [], devices: [RDMADeviceFacts] = [], deviceErrors: [String: String] = [:],
                cm: CMFacts = CMFacts(deviceFile: false), peerMemoryClients: [String] = [], dmaBuf: DMABufSupport? = nil,
                dmaBufDevice: String? = nil) {
        self.kernelCore = kernelCore
        self.softRoCEAvailable = softRoCEAvailable
        self.kernelDevices = kernelDevices
        self.uverbsPresent = uverbsPresent
        self.modules = modules
        self.devices = devices
        self.deviceErrors = deviceErrors
        self.cm = cm
        self.peerMemoryClients = peerMemoryClients
        self.dmaBuf = dmaBuf
        self.dmaBufDevice = dmaBufDevice
    }
}

public struct RDMADeviceFacts: Codable, Sendable, Equatable {
    public var name: String
    public var ports: [PortFacts]
    /// nil when `ibv_query_device_ex` failed (then `odpError` says why).
    public var odp: OnDemandPaging?
    public var odpError: String?

    public init(name: String, ports: [PortFacts], odp: OnDemandPaging? = nil, odpError: String? = nil) {
        self.name = name
        self.ports = ports
        self.odp = odp
        self.odpError = odpError
    }
}

public struct PortFacts: Codable, Sendable, Equatable {
    public var number: Int
    public var state: PortState
    public var linkLayer: LinkLayer
    public var activeMTU: Int?
    public var maxMTU: Int?
    public var gids: [GIDFacts]
    /// The network interface under the port (RoCE), from the GID table's attributes.
    public var netdev: String?
    /// That interface's MTU (/sys/class/net/IF/mtu).
    public var netdevMTU: Int?

    public init(number: Int, state: PortState, linkLayer: LinkLayer, activeMTU: Int?, maxMTU: Int?, gids: [GIDFacts],
                netdev: String? = nil, netdevMTU: Int? = nil) {
        self.number = number
        self.state = state
        self.linkLayer = linkLayer
        self.activeMTU = activeMTU
        self.maxMTU = maxMTU
        self.gids = gids
        self.netdev = netdev
        self.netdevMTU = netdevMTU
    }
}

public struct GIDFacts: Codable, Sendable, Equatable {
    public var index: Int
    public var type: GIDType
    public var address: String
    /// fe80::/10: usable on the local link only.
    public var linkLocal: Bool
    /// An IPv4-mapped GID (::ffff:a.b.c.d).
    public var ipv4: Bool

    public init(index: Int, type: GIDType, address: String, linkLocal: Bool, ipv4: Bool) {
        self.index = index
        self.type = type
        self.address = address
        self.linkLocal = linkLocal
        self.ipv4 = ipv4
    }

    public init(_ entry: GIDEntry) {
        let bytes = entry.gid.bytes
        self.init(index: entry.index, type: entry.type, address: entry.address,
                  linkLocal: bytes[0] == 0xfe && bytes[1] & 0xc0 == 0x80, ipv4: entry.gid.ipv4 != nil)
    }
}

/// rdma_cm: /dev/infiniband/rdma_cm and a listener bound on the first active port's address.
public struct CMFacts: Codable, Sendable, Equatable {
    public var deviceFile: Bool
    /// The address the probe bound (nil: the wildcard, when no port had an address).
    public var address: String?
    /// nil: not tried (no device file); "" never. Otherwise the error of `rdma_create_id`/`rdma_bind_addr`.
    public var error: String?
    public var errno: Int32?
    /// Whether the bind was tried and succeeded.
    public var bound: Bool
    /// The RDMA device the bound address belongs to.
    public var boundDevice: String?

    public init(deviceFile: Bool, address: String? = nil, error: String? = nil, errno: Int32? = nil, bound: Bool = false,
                boundDevice: String? = nil) {
        self.deviceFile = deviceFile
        self.address = address
        self.error = error
        self.errno = errno
        self.bound = bound
        self.boundDevice = boundDevice
    }
}

/// RLIMIT_MEMLOCK and CAP_IPC_LOCK: how much memory this process may pin for the NIC.
public struct MemlockFacts: Codable, Sendable, Equatable {
    /// Soft limit in bytes; nil: unlimited.
    public var soft: UInt64?
    public var hard: UInt64?
    /// CAP_IPC_LOCK in the effective set: the limit does not apply.
    public var capIPCLock: Bool

    public init(soft: UInt64?, hard: UInt64?, capIPCLock: Bool) {
        self.soft = soft
        self.hard = hard
        self.capIPCLock = capIPCLock
    }
}

/// The Vulkan side: what `vkverbs devices` surveys, reduced to what the checks need.
public struct VulkanFacts: Codable, Sendable, Equatable {
    /// False when there is no loader driver or no physical device; `note` says why.
    public var available: Bool
    public var note: String?
    /// The emulation layer VK_LAYER_VKVERBS_rdma_emulation: the loader finds it; it was on.
    public var layerFound: Bool
    public var layerEnabled: Bool
    public var devices: [VulkanDeviceFacts]

    public init(available: Bool, note: String? = nil, layerFound: Bool = false, layerEnabled: Bool = false,
                devices: [VulkanDeviceFacts] = []) {
        self.available = available
        self.note = note
        self.layerFound = layerFound
        self.layerEnabled = layerEnabled
        self.devices = devices
    }
}

public struct VulkanDeviceFacts: Codable, Sendable, Equatable {
    public var index: Int
    public var name: String
    /// "discreteGPU", "integratedGPU", "virtualGPU", "cpu", "other" (as CapabilityReport).
    public var type: String
    public var vendorID: UInt32
    public var extensions: VulkanExtensionFacts
    public var externalMemoryRDMASource: ExternalMemoryRDMASource?
    public var rdmaCapableTypes: [Int]
    /// Bytes still available in the heaps of the RDMA-capable types (the budget where
    /// VK_EXT_memory_budget is there, else the heap sizes).
    public var rdmaCapableAvailable: UInt64
    public var budgetSource: BudgetSource
    /// The largest heap with a DEVICE_LOCAL|HOST_VISIBLE type (the BAR the CPU sees); nil: none.
    public var barBytes: UInt64?
    /// The largest device-local heap.
    public var deviceLocalBytes: UInt64
    /// What the automatic choice took for a small allocation with the NIC considered (nil: nothing worked).
    public var chosen: MemoryStrategy?
    /// Why each better strategy was not taken.
    public var rejected: [String: String]
    public var choiceError: String?
    /// Whether the NIC's side was part of the choice.
    public var nicConsidered: Bool

    public init(index: Int, name: String, type: String, vendorID: UInt32, extensions: VulkanExtensionFacts,
                externalMemoryRDMASource: ExternalMemoryRDMASource?, rdmaCapableTypes: [Int], rdmaCapableAvailable: UInt64,
                budgetSource: BudgetSource, barBytes: UInt64?, deviceLocalBytes: UInt64, chosen: MemoryStrategy?,
                rejected: [String: String], choiceError: String?, nicConsidered: Bool) {
        self.index = index
        self.name = name
        self.type = type
        self.vendorID = vendorID
        self.extensions = extensions
        self.externalMemoryRDMASource = externalMemoryRDMASource
        self.rdmaCapableTypes = rdmaCapableTypes
        self.rdmaCapableAvailable = rdmaCapableAvailable
        self.budgetSource = budgetSource
        self.barBytes = barBytes
        self.deviceLocalBytes = deviceLocalBytes
        self.chosen = chosen
        self.rejected = rejected
        self.choiceError = choiceError
        self.nicConsidered = nicConsidered
    }

    /// The device's own memory is host memory (a CPU device or an integrated GPU), so
    /// registering host-visible or imported host memory is already zero-copy.
    public var memoryIsHostMemory: Bool { type == "cpu" || type == "integratedGPU" }
}

/// The device extensions the memory strategies rest on.
public struct VulkanExtensionFacts: Codable, Sendable, Equatable {
    public var externalMemoryRDMA: Bool
    public var externalMemoryDMABuf: Bool
    public var externalMemoryFD: Bool
    public var externalMemoryHost: Bool
    public var memoryBudget: Bool

    public init(externalMemoryRDMA: Bool = false, externalMemoryDMABuf: Bool = false, externalMemoryFD: Bool = false,
                externalMemoryHost: Bool = false, memoryBudget: Bool = false) {
        self.externalMemoryRDMA = externalMemoryRDMA
        self.externalMemoryDMABuf = externalMemoryDMABuf
        self.externalMemoryFD = externalMemoryFD
        self.externalMemoryHost = externalMemoryHost
        self.memoryBudget = memoryBudget
    }
}
