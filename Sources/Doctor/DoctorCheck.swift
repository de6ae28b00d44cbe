/// One link of the chain from Vulkan memory to the wire, as judged from the facts.
public struct DoctorCheck: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable, Comparable {
        /// Works.
        case ok
        /// Optional, or only worth knowing: neither helps nor blocks the path.
        case info
        /// Works, but slower or smaller than it could be.
        case warn
        /// Broken: the path through this link does not work.
        case fail
        /// Not judged: an earlier link it needs failed.
        case skip

        private var rank: Int { [.ok: 0, .skip: 1, .info: 2, .warn: 3, .fail: 4][self]! }
        public static func < (a: Status, b: Status) -> Bool { a.rank < b.rank }
    }

    /// A stable name for scripts: "rdma.devices", "vulkan.bar[0]", ...
    public var id: String
    public var title: String
    public var status: Status
    /// What was found.
    public var found: String
    /// Why it is not better (for warn and fail, and info where there is a reason).
    public var cause: String?
    /// What to do about it.
    public var fix: String?

    public init(id: String, title: String, status: Status, found: String, cause: String? = nil, fix: String? = nil) {
        self.id = id
        self.title = title
        self.status = status
        self.found = found
        self.cause = cause
        self.fix = fix
    }
}

/// The best path the checks found, and the exit status that says it.
public enum DoctorVerdict: String, Codable, Sendable {
    /// RDMA works and Vulkan memory is registered with the NIC without a copy: the GPU's own
    /// memory (VK_NV_external_memory_rdma, dma-buf), or host-visible/imported memory on a device
    /// whose memory is host memory (a CPU device, an integrated GPU).
    case direct
    /// RDMA works, but Vulkan memory reaches it only through host memory on a discrete GPU
    /// (host-import, host-visible) or staged copies, or there is no Vulkan device (host memory only).
    case throughHost = "through-host"
    /// No RDMA path: no device, no active port, no usable address, rdma_cm, or a probe hung.
    case noRDMA = "no-rdma"

    /// The process exit status: 0 when the best path works, 2 when only a slower one does,
    /// 3 when nothing reaches the wire. (1 stays the status of a doctor that could not run.)
    public var exitStatus: Int32 {
        switch self {
        case .direct: return 0
        case .throughHost: return 2
        case .noRDMA: return 3
        }
    }
}

/// The checks and what they add up to.
public struct Diagnosis: Codable, Sendable, Equatable {
    public var verdict: DoctorVerdict
    /// One sentence: the path that works, or the first link that breaks it.
    public var summary: String
    public var exitStatus: Int32
    public var checks: [DoctorCheck]

    public init(verdict: DoctorVerdict, summary: String, checks: [DoctorCheck]) {
        self.verdict = verdict
        self.summary = summary
        exitStatus = verdict.exitStatus
        self.checks = checks
    }

    public func check(_ id: String) -> DoctorCheck? { checks.first { $0.id == id } }
}
