#if canImport(Glibc)
import Glibc
#endif
import CVerbs

/// Whether the device accepts dma-buf memory regions (`ibv_reg_dmabuf_mr`).
public enum DMABufSupport: Codable, Sendable, Equatable, CustomStringConvertible {
    case supported
    /// The driver refused (EOPNOTSUPP / EPROTONOSUPPORT): register host memory instead.
    case unsupported(errno: Int32)
    /// The probe got an answer that says neither (an old kernel, a permission problem).
    case unknown(errno: Int32)

    public var isSupported: Bool { self == .supported }

    public var description: String {
        switch self {
        case .supported: return "supported"
        case let .unsupported(code): return "not supported (\(errnoText(code)))"
        case let .unknown(code): return "unknown (\(errnoText(code)))"
        }
    }
}

/// Where the protection domain of an in-memory device records its regions, so that a peer's
/// rkey can be checked and its bytes found (VerbsEmbedded implements it).
package protocol InMemoryRegistry: AnyObject, Sendable {
    /// Records `length` bytes at `address`, addressed by peers from `iova`; returns the keys.
    func register(address: UnsafeMutableRawPointer, length: Int, iova: UInt64, access: AccessFlags) -> (lkey: UInt32, rkey: UInt32)
    /// Forgets the region: later work requests naming its keys fail as they would on a device.
    func deregister(lkey: UInt32)
}

/// A protection domain (`ibv_alloc_pd`); memory regions and queue pairs live in one.
/// One on an in-memory device (`init(inMemory:registry:)`) registers host memory with its
/// registry instead of the kernel; queue pairs cannot be made in it.
public final class ProtectionDomain: Sendable {
    private let handle: CHandle<ibv_pd>?
    package let registry: (any InMemoryRegistry)?
    public let context: Context

    /// `ibv_alloc_pd`.
    public init(context: Context) throws(VerbsError) {
        handle = CHandle(try checkPointer("ibv_alloc_pd", ibv_alloc_pd(try context.raw("ibv_alloc_pd"))))
        registry = nil
        self.context = context
    }

    /// A protection domain of an in-memory device.
    package init(inMemory context: Context, registry: any InMemoryRegistry) {
        handle = nil
        self.registry = registry
        self.context = context
    }

    deinit { if let device { ibv_dealloc_pd(device) } }

    /// The verbs protection domain; nil for one of an in-memory device.
    private var device: UnsafeMutablePointer<ibv_pd>? { handle?.pointer }

    /// The verbs protection domain, for `verb`; an in-memory one has none.
    func raw(_ verb: String) throws(VerbsError) -> UnsafeMutablePointer<ibv_pd> {
        guard let device else { throw VerbsError.unsupported(verb: "\(verb) on the in-memory device \(context.name)", errno: ENODEV) }
        return device
    }

    /// Registers `length` bytes at `address` (`ibv_reg_mr`). `owner` is kept alive as
    /// long as the region, so the memory cannot be freed under the NIC.
    public func register(
        address: UnsafeMutableRawPointer?, length: Int, access: AccessFlags, owner: (any AnyObject & Sendable)? = nil
    ) throws(VerbsError) -> MemoryRegion {
        let address = try validate(address: address, length: length, access: access)
        if let registry {
            return inMemoryRegion(registry, address: address, length: length, iova: UInt64(UInt(bitPattern: address)),
                                  access: access, owner: owner)
        }
        let mr: UnsafeMutablePointer<ibv_mr>
        do { mr = try checkPointer("ibv_reg_mr", ibv_reg_mr(try raw("ibv_reg_mr"), address, length, access.rawValue)) } catch {
            throw registrationError("ibv_reg_mr", length: length, error)
        }
        return MemoryRegion(raw: mr, pd: self, access: access, hostAddress: address, owner: owner)
    }

    /// Registers memory with an I/O virtual address of the caller's choosing (`ibv_reg_mr_iova2`):
    /// peers address the region from `iova` instead of from the process' virtual address.
    public func register(
        address: UnsafeMutableRawPointer?, length: Int, iova: UInt64, access: AccessFlags, owner: (any AnyObject & Sendable)? = nil
    ) throws(VerbsError) -> MemoryRegion {
        let address = try validate(address: address, length: length, access: access)
        if let registry { return inMemoryRegion(registry, address: address, length: length, iova: iova, access: access, owner: owner) }
        let mr: UnsafeMutablePointer<ibv_mr>
        do {
            mr = try checkPointer("ibv_reg_mr_iova2", ibv_reg_mr_iova2(try raw("ibv_reg_mr_iova2"), address, length, iova, UInt32(bitPattern: access.rawValue)))
        } catch {
            throw registrationError("ibv_reg_mr_iova2", length: length, error)
        }
        return MemoryRegion(raw: mr, pd: self, access: access, hostAddress: address, iova: iova, owner: owner)
    }

    /// Registers a page-aligned host buffer; the region keeps the buffer alive.
    public func register(_ buffer: HostBuffer, access: AccessFlags) throws(VerbsError) -> MemoryRegion {
        try register(address: buffer.pointer, length: buffer.count, access: access, owner: buffer)
    }

    /// Registers a dma-buf (`ibv_reg_dmabuf_mr`), e.g. one exported by a GPU driver.
    /// `owner` keeps the exporter's memory (and the fd) alive as long as the region.
    /// A device without dma-buf support throws `.unsupported`.
    public func registerDMABuf(
        fd: Int32, offset: UInt64, length: Int, iova: UInt64, access: AccessFlags, owner: (any AnyObject & Sendable)? = nil
    ) throws(VerbsError) -> MemoryRegion {
        guard length > 0 else { throw VerbsError.invalidArgument("memory region length must be > 0") }
        guard fd >= 0 else { throw VerbsError.invalidArgument("dma-buf fd \(fd) is not a file descriptor") }
        guard access.isConsistent else { throw inconsistentAccess(access) }
        let mr = try checkPointer(
            "ibv_reg_dmabuf_mr", ibv_reg_dmabuf_mr(try raw("ibv_reg_dmabuf_mr"), offset, length, iova, fd, access.rawValue))
        return MemoryRegion(raw: mr, pd: self, access: access, hostAddress: nil, iova: iova, owner: owner)
    }

    /// Asks the device whether it takes dma-buf regions, by calling `ibv_reg_dmabuf_mr`
    /// with fd -1: a device that supports them looks the fd up and fails with EBADF;
    /// one that does not fails with EOPNOTSUPP or EPROTONOSUPPORT first.
    public func dmaBufSupport() -> DMABufSupport {
        guard let device else { return .unsupported(errno: ENODEV) }
        if let mr = ibv_reg_dmabuf_mr(device, 0, 4096, 0, -1, Int32(IBV_ACCESS_LOCAL_WRITE.rawValue)) {
            ibv_dereg_mr(mr)  // No device should accept fd -1; don't leak it if one did.
            return .unknown(errno: 0)
        }
        let code = Glibc.errno
        switch code {
        case EBADF: return .supported
        case EOPNOTSUPP, ENOTSUP, EPROTONOSUPPORT: return .unsupported(errno: code)
        default: return .unknown(errno: code)
        }
    }

    private func inMemoryRegion(_ registry: any InMemoryRegistry, address: UnsafeMutableRawPointer, length: Int, iova: UInt64,
                                access: AccessFlags, owner: (any AnyObject & Sendable)?) -> MemoryRegion {
        let keys = registry.register(address: address, length: length, iova: iova, access: access)
        return MemoryRegion(inMemory: keys, length: length, pd: self, access: access, hostAddress: address, iova: iova, owner: owner)
    }

    private func validate(
        address: UnsafeMutableRawPointer?, length: Int, access: AccessFlags
    ) throws(VerbsError) -> UnsafeMutableRawPointer {
        guard let address else { throw VerbsError.invalidArgument("memory region address is null") }
        guard length > 0 else { throw VerbsError.invalidArgument("memory region length must be > 0, got \(length)") }
        guard access.isConsistent else { throw inconsistentAccess(access) }
        return address
    }

    private func inconsistentAccess(_ access: AccessFlags) -> VerbsError {
        .invalidArgument("remote write or atomic access needs local write too (access 0x\(String(access.rawValue, radix: 16)))")
    }
}
