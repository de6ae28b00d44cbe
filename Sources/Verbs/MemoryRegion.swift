#if canImport(Glibc)
import Glibc
#endif
import CVerbs
import Sharing

/// A registered memory region (`struct ibv_mr`). Deregistered (`ibv_dereg_mr`) when the
/// last reference goes; until then it keeps its protection domain and the owner of
/// its memory alive.
public final class MemoryRegion: Sendable {
    /// nil for a region of an in-memory protection domain.
    private let handle: CHandle<ibv_mr>?
    public let pd: ProtectionDomain
    public let access: AccessFlags
    /// What owns the registered memory (a HostBuffer, a Vulkan allocation, ...). Released with
    /// the region, on whichever thread lets the region go, hence Sendable.
    public let owner: (any AnyObject & Sendable)?
    private let host: MemoryAddress?

    /// The address work requests use for this region: the iova it was registered with
    /// (for `ibv_reg_mr`, the host address). libibverbs' `mr->addr` holds the host address
    /// even for iova registrations, hence kept here.
    public let address: UInt64

    init(raw: UnsafeMutablePointer<ibv_mr>, pd: ProtectionDomain, access: AccessFlags,
         hostAddress: UnsafeMutableRawPointer?, iova: UInt64? = nil, owner: (any AnyObject & Sendable)?) {
        handle = CHandle(raw)
        self.address = iova ?? UInt64(UInt(bitPattern: raw.pointee.addr))
        lkey = raw.pointee.lkey
        rkey = raw.pointee.rkey
        length = raw.pointee.length
        self.pd = pd
        self.access = access
        host = hostAddress.map(MemoryAddress.init)
        self.owner = owner
    }

    init(inMemory keys: (lkey: UInt32, rkey: UInt32), length: Int, pd: ProtectionDomain, access: AccessFlags,
         hostAddress: UnsafeMutableRawPointer, iova: UInt64, owner: (any AnyObject & Sendable)?) {
        handle = nil
        address = iova
        lkey = keys.lkey
        rkey = keys.rkey
        self.length = length
        self.pd = pd
        self.access = access
        host = MemoryAddress(hostAddress)
        self.owner = owner
    }

    deinit {
        if let raw { ibv_dereg_mr(raw) } else { pd.registry?.deregister(lkey: lkey) }
    }

    /// The verbs memory region; nil for a region of an in-memory protection domain.
    var raw: UnsafeMutablePointer<ibv_mr>? { handle?.pointer }

    /// The memory as this process sees it; nil for dma-buf regions.
    public var hostAddress: UnsafeMutableRawPointer? { host?.pointer }

    public let lkey: UInt32
    public let rkey: UInt32
    public let length: Int

    /// What a peer needs to RDMA into or out of this region. Only regions registered
    /// with remote rights have one worth sending.
    public var remoteBuffer: RemoteBuffer { RemoteBuffer(address: address, length: UInt64(length), rkey: rkey) }

    /// The registered bytes, when the region is host memory.
    public var bytes: UnsafeMutableRawBufferPointer? {
        hostAddress.map { UnsafeMutableRawBufferPointer(start: $0, count: length) }
    }

    /// A slice of this region for a work request, bounds-checked here so a bad offset
    /// is an error before anything is posted.
    public func segment(offset: Int = 0, length: Int? = nil) throws(VerbsError) -> LocalSegment {
        let length = length ?? (self.length - offset)
        guard offset >= 0, length >= 0, offset <= self.length, length <= self.length - offset else {
            throw VerbsError.outOfRange(
                "segment offset \(offset) length \(length) is outside the \(self.length)-byte memory region")
        }
        guard length <= Int(UInt32.max) else {
            throw VerbsError.invalidArgument("a work request moves at most 4 GiB - 1, got \(length) bytes")
        }
        return LocalSegment(region: self, offset: offset, length: length)
    }
}
