import Sharing
import Verbs

/// The memory an in-memory protection domain registered, looked up by key as a NIC would:
/// an lkey for the local side of a request, an rkey (with the range and the right) for the
/// remote side. Regions leave it when they are released.
final class InMemoryRegistrations: InMemoryRegistry {
    struct Entry {
        /// The host address, as a number so the table is Sendable.
        var address: UInt
        var length: Int
        var iova: UInt64
        var access: AccessFlags
    }

    private struct Table {
        var nextKey: UInt32 = 1
        var byLocalKey: [UInt32: Entry] = [:]
    }

    private let table = Locked(Table())
    /// Keys of one domain start here, so keys of different domains never match by accident.
    private let keyBase: UInt32

    init(keyBase: UInt32) { self.keyBase = keyBase }

    static let remoteKeyBit: UInt32 = 0x8000_0000

    func register(address: UnsafeMutableRawPointer, length: Int, iova: UInt64, access: AccessFlags) -> (lkey: UInt32, rkey: UInt32) {
        table.withLock { t in
            let key = keyBase | t.nextKey
            t.nextKey = (t.nextKey + 1) & 0x00FF_FFFF
            t.byLocalKey[key] = Entry(address: UInt(bitPattern: address), length: length, iova: iova, access: access)
            return (key, key | Self.remoteKeyBit)
        }
    }

    func deregister(lkey: UInt32) {
        _ = table.withLock { $0.byLocalKey.removeValue(forKey: lkey) }
    }

    var count: Int { table.withLock { $0.byLocalKey.count } }

    /// The host bytes of `length` bytes at `address` under local key `lkey`, if registered.
    func local(lkey: UInt32, address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        table.withLock { t in
            guard let e = t.byLocalKey[lkey] else { return nil }
            return Self.resolve(e, address: address, length: length)
        }
    }

    /// The host bytes a peer addresses with `rkey`, if registered with `right` and the range fits.
    func remote(rkey: UInt32, address: UInt64, length: Int, right: AccessFlags) -> UnsafeMutableRawPointer? {
        guard rkey & Self.remoteKeyBit != 0 else { return nil }
        return table.withLock { t in
            guard let e = t.byLocalKey[rkey & ~Self.remoteKeyBit], e.access.contains(right) else { return nil }
            return Self.resolve(e, address: address, length: length)
        }
    }

    private static func resolve(_ e: Entry, address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        guard address >= e.iova, length >= 0 else { return nil }
        let offset = address - e.iova
        guard offset <= UInt64(e.length), UInt64(length) <= UInt64(e.length) - offset else { return nil }
        return UnsafeMutableRawPointer(bitPattern: e.address)! + Int(offset)
    }
}
