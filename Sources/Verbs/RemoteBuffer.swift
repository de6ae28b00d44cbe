/// What a peer needs to address a registered region: its address, length and rkey.
/// Encoded as 20 big-endian bytes so it fits connection private data or any channel.
public struct RemoteBuffer: Equatable, Hashable, Sendable, Codable {
    public var address: UInt64
    public var length: UInt64
    public var rkey: UInt32

    public init(address: UInt64, length: UInt64, rkey: UInt32) {
        self.address = address
        self.length = length
        self.rkey = rkey
    }

    public static let encodedSize = 20

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.encodedSize)
        withUnsafeBytes(of: address.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: length.bigEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: rkey.bigEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// Decodes the 20-byte form; anything shorter is an error, never a partial value.
    public init(decoding bytes: some Collection<UInt8>) throws(VerbsError) {
        let b = Array(bytes.prefix(Self.encodedSize))
        guard b.count == Self.encodedSize else {
            throw VerbsError.invalidArgument("a remote buffer descriptor has \(Self.encodedSize) bytes, got \(bytes.count)")
        }
        func be<T: FixedWidthInteger>(_ range: Range<Int>, _: T.Type) -> T {
            range.reduce(T(0)) { ($0 << 8) | T(b[$1]) }
        }
        self.init(address: be(0..<8, UInt64.self), length: be(8..<16, UInt64.self), rkey: be(16..<20, UInt32.self))
    }

    /// Checks that `length` bytes at `offset` lie inside this buffer.
    package func check(offset: UInt64, length: Int) throws(VerbsError) {
        let len = UInt64(length)
        guard offset <= self.length, len <= self.length - offset else {
            throw VerbsError.outOfRange(
                "remote range offset \(offset) length \(length) is outside the \(self.length)-byte remote buffer")
        }
    }
}
