/// HMAC (RFC 2104) over SHA-256, streaming, and a comparison of tags in constant time.
public struct HMACSHA256: Sendable {
    private var inner = SHA256()
    private var outerPad: [UInt8]

    public init(key: [UInt8]) {
        // A key longer than a block is hashed first; a shorter one is padded with zeros.
        var block = key.count > SHA256.blockSize ? SHA256.hash(key) : key
        block += [UInt8](repeating: 0, count: SHA256.blockSize - block.count)
        inner.update(block.map { $0 ^ 0x36 })
        outerPad = block.map { $0 ^ 0x5c }
    }

    /// The tag of `message` under `key` in one call.
    public static func authenticationCode<Bytes: Collection<UInt8>>(for message: Bytes, key: [UInt8]) -> [UInt8] {
        var mac = HMACSHA256(key: key)
        mac.update(message)
        return mac.finalize()
    }

    public mutating func update<Bytes: Collection<UInt8>>(_ data: Bytes) { inner.update(data) }

    public consuming func finalize() -> [UInt8] {
        var outer = SHA256()
        outer.update(outerPad)
        outer.update(inner.finalize())
        return outer.finalize()
    }

    /// Whether two tags are equal, taking the same time wherever they differ (the lengths are
    /// not secret).
    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
