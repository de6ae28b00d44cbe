#if canImport(Glibc)
import Glibc
#endif
import Sharing
import Verbs

/// Registers memory once and hands the registration out again for any range it covers,
/// as NCCL's and UCX's registration caches do: registering is a syscall that pins pages,
/// far too slow for every transfer.
///
/// Entries are page-granular and keyed by address range, access and owner. An entry holds
/// its owner weakly: once the owner (a HostBuffer, a Vulkan allocation) is gone, its pages
/// may come back at the same address for someone else, so the entry is dropped instead of
/// reused. Memory without an owner must be `invalidate`d by the caller before it is freed.
public final class RegistrationCache: Sendable {
    public let pd: ProtectionDomain
    /// Idle entries kept beyond this are deregistered, oldest first.
    public let maxIdleEntries: Int

    final class Entry: @unchecked Sendable {  // the vars (users, lastUse, owner) are touched only under the cache's lock
        let region: MemoryRegion
        let start: UInt
        let end: UInt
        let access: AccessFlags
        weak var owner: AnyObject?
        let hadOwner: Bool
        var users = 0
        var lastUse: UInt64 = 0

        init(region: MemoryRegion, start: UInt, end: UInt, access: AccessFlags, owner: AnyObject?) {
            self.region = region
            self.start = start
            self.end = end
            self.access = access
            self.owner = owner
            hadOwner = owner != nil
        }

        var isStale: Bool { hadOwner && owner == nil }
    }

    private struct State {
        var entries: [Entry] = []
        var clock: UInt64 = 0
        var hits = 0
        var misses = 0
        /// Entries deregistered by the cache: idle beyond the limit, owner gone, or invalidated.
        var evictions = 0
    }

    private let state = Locked(State())
    private let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))

    public init(pd: ProtectionDomain, maxIdleEntries: Int = 64) {
        self.pd = pd
        self.maxIdleEntries = maxIdleEntries
    }

    /// Entries currently registered (in use or idle).
    public var count: Int { state.withLock { $0.entries.count } }
    /// Lookups a registered entry answered.
    public var hits: Int { state.withLock { $0.hits } }
    /// Lookups that had to register.
    public var misses: Int { state.withLock { $0.misses } }
    /// Entries the cache let go of: idle beyond `maxIdleEntries`, owner gone, or invalidated.
    public var evictions: Int { state.withLock { $0.evictions } }

    /// A registration covering `length` bytes at `address` with at least `access`; `owner`
    /// is kept alive while the returned handle lives.
    public func register(address: UnsafeMutableRawPointer, length: Int, access: AccessFlags,
                         owner: AnyObject?) throws(VerbsError) -> Registration {
        guard length > 0 else { throw VerbsError.invalidArgument("registration length must be > 0") }
        let a = UInt(bitPattern: address)
        let (end, overflow) = a.addingReportingOverflow(UInt(length))
        guard !overflow else { throw VerbsError.invalidArgument("address range wraps around") }
        let start = a & ~(pageSize - 1)
        let pageEnd = (end + pageSize - 1) & ~(pageSize - 1)

        let hit = state.withLock { state -> Entry? in
            Self.dropStale(&state)
            state.clock += 1
            guard let hit = state.entries.first(where: {
                $0.start <= a && end <= $0.end && $0.access.isSuperset(of: access) && $0.owner === owner && !$0.isStale
            }) else {
                state.misses += 1
                return nil
            }
            state.hits += 1
            hit.users += 1
            hit.lastUse = state.clock
            return hit
        }
        if let hit { return Registration(cache: self, entry: hit, address: a, length: length, owner: owner) }

        // Registering pins pages and may sleep: not under the lock.
        let region = try pd.register(address: UnsafeMutableRawPointer(bitPattern: start), length: Int(pageEnd - start),
                                     access: access, owner: nil)
        let entry = Entry(region: region, start: start, end: pageEnd, access: access, owner: owner)
        state.withLock { state in
            entry.users = 1
            entry.lastUse = state.clock
            state.entries.append(entry)
            Self.trimIdle(&state, keep: maxIdleEntries)
        }
        return Registration(cache: self, entry: entry, address: a, length: length, owner: owner)
    }

    /// Registers a host buffer through the cache.
    public func register(_ buffer: HostBuffer, access: AccessFlags) throws(VerbsError) -> Registration {
        try register(address: buffer.pointer, length: buffer.count, access: access, owner: buffer)
    }

    /// Forgets every entry overlapping the range; call before freeing memory that has no owner.
    /// Regions still in use are deregistered when their last handle goes.
    public func invalidate(address: UnsafeRawPointer, length: Int) {
        let a = UInt(bitPattern: address)
        let end = a + UInt(max(length, 1))
        state.withLock { s in
            let before = s.entries.count
            s.entries.removeAll { $0.start < end && a < $0.end }
            s.evictions += before - s.entries.count
        }
    }

    /// Deregisters idle entries whose owner is gone.
    public func purge() { state.withLock { Self.dropStale(&$0) } }

    fileprivate func release(_ entry: Entry) {
        state.withLock { state in
            entry.users -= 1
            Self.trimIdle(&state, keep: maxIdleEntries)
        }
    }

    private static func dropStale(_ state: inout State) {
        let before = state.entries.count
        state.entries.removeAll { $0.isStale && $0.users == 0 }
        state.evictions += before - state.entries.count
    }

    private static func trimIdle(_ state: inout State, keep: Int) {
        let idle = state.entries.filter { $0.users == 0 }
        guard idle.count > keep else { return }
        let victims = Set(idle.sorted { $0.lastUse < $1.lastUse }.prefix(idle.count - keep).map { ObjectIdentifier($0) })
        state.entries.removeAll { victims.contains(ObjectIdentifier($0)) }
        state.evictions += victims.count
    }
}

/// A use of a cached registration: the region, and where the caller's bytes sit in it.
/// Used by one thread at a time (it hands out segments of one caller's bytes); not Sendable.
public final class Registration {
    private let cache: RegistrationCache
    private let entry: RegistrationCache.Entry
    /// Keeps the memory's owner alive while the registration is in use.
    public let owner: AnyObject?
    public let offset: Int
    public let length: Int

    fileprivate init(cache: RegistrationCache, entry: RegistrationCache.Entry, address: UInt, length: Int, owner: AnyObject?) {
        self.cache = cache
        self.entry = entry
        self.owner = owner
        offset = Int(address - entry.start)
        self.length = length
    }

    deinit { cache.release(entry) }

    public var region: MemoryRegion { entry.region }

    /// The caller's bytes (or a part of them) for a work request.
    public func segment(offset: Int = 0, length: Int? = nil) throws(VerbsError) -> LocalSegment {
        let length = length ?? (self.length - offset)
        guard offset >= 0, length >= 0, offset <= self.length, length <= self.length - offset else {
            throw VerbsError.outOfRange("range offset \(offset) length \(length) is outside the \(self.length)-byte registration")
        }
        return try entry.region.segment(offset: self.offset + offset, length: length)
    }

    /// What a peer needs to reach exactly these bytes.
    public var remoteBuffer: RemoteBuffer {
        RemoteBuffer(address: entry.region.address + UInt64(offset), length: UInt64(length), rkey: entry.region.rkey)
    }
}
