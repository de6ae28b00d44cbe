/// What one member puts into the group's allgather: a fixed-size record (so `MPI_Allgather`
/// with a count of `GroupRecord.size` bytes carries it), little-endian:
///
///     0  magic "VKVG"          4
///     4  version (1)           u16
///     6  address length        u16
///     8  rank                  u32
///     12 group size            u32
///     16 nonce                 u64   (rank 0's names the group in every hello)
///     24 descriptor length     u16
///     26 neighbours            u16   bit 15 set: the member names its neighbours, the
///                                    count in bits 0-14; clear (and count 0): every member
///     28 address               maxAddress bytes
///     .. descriptor            maxDescriptor bytes
///     .. neighbours            u32 × maxNeighbours
///
/// Every field of a record from the allgather is checked before use.
struct GroupRecord: Equatable {
    /// Why a record was refused.
    struct Problem: Error, Equatable, ExpressibleByStringInterpolation {
        let text: String
        init(stringLiteral value: String) { text = value }
    }

    static let size = 1024
    static let maxAddress = 128
    static let maxDescriptor = 512
    static let maxNeighbours = 64
    static let magic: [UInt8] = Array("VKVG".utf8)
    static let version: UInt16 = 1
    private static let addressAt = 28
    private static let descriptorAt = addressAt + maxAddress
    private static let neighboursAt = descriptorAt + maxDescriptor

    var rank: Int
    var groupSize: Int
    var nonce: UInt64
    var address: [UInt8]
    var descriptor: [UInt8]
    /// Connect to every member (and `neighbours` is empty).
    var allToAll: Bool
    /// The members named, when not `allToAll`.
    var neighbours: [Int]

    func encoded() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.size)
        b.replaceSubrange(0..<4, with: Self.magic)
        Self.put(&b, 4, UInt64(Self.version), 2)
        Self.put(&b, 6, UInt64(address.count), 2)
        Self.put(&b, 8, UInt64(rank), 4)
        Self.put(&b, 12, UInt64(groupSize), 4)
        Self.put(&b, 16, nonce, 8)
        Self.put(&b, 24, UInt64(descriptor.count), 2)
        Self.put(&b, 26, UInt64(neighbours.count) | (allToAll ? 0 : 0x8000), 2)
        b.replaceSubrange(Self.addressAt..<Self.addressAt + address.count, with: address)
        b.replaceSubrange(Self.descriptorAt..<Self.descriptorAt + descriptor.count, with: descriptor)
        for (i, n) in neighbours.enumerated() { Self.put(&b, Self.neighboursAt + 4 * i, UInt64(n), 4) }
        return b
    }

    /// Decodes and checks a record of a group of `groupSize` (a hostile peer's bytes).
    static func decode(_ b: ArraySlice<UInt8>, groupSize: Int) -> Result<GroupRecord, Problem> {
        guard b.count == size else { return .failure("\(b.count) bytes, not \(size)") }
        let s = b.startIndex
        func get(_ at: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(b[s + at + i]) << (8 * UInt64(i)) }
            return v
        }
        guard Array(b[s..<s + 4]) == magic else { return .failure("no record there (bad magic)") }
        guard get(4, 2) == UInt64(version) else { return .failure("record version \(get(4, 2)), this library reads \(version)") }
        guard let addressLength = Int(exactly: get(6, 2)), addressLength > 0, addressLength <= maxAddress else {
            return .failure("address length \(get(6, 2)) outside 1...\(maxAddress)")
        }
        guard let descriptorLength = Int(exactly: get(24, 2)), descriptorLength <= maxDescriptor else {
            return .failure("descriptor length \(get(24, 2)) exceeds \(maxDescriptor)")
        }
        let allToAll = get(26, 2) & 0x8000 == 0
        guard let neighbourCount = Int(exactly: get(26, 2) & 0x7FFF), neighbourCount <= maxNeighbours,
              !allToAll || neighbourCount == 0 else {
            return .failure("neighbour field 0x\(String(get(26, 2), radix: 16)) is not 0, nor a flagged count up to \(maxNeighbours)")
        }
        guard let claimedSize = Int(exactly: get(12, 4)), claimedSize == groupSize else {
            return .failure("a group of \(get(12, 4)) members, not \(groupSize)")
        }
        guard let rank = Int(exactly: get(8, 4)), rank < groupSize else { return .failure("rank \(get(8, 4)) outside 0..<\(groupSize)") }
        var neighbours: [Int] = []
        for i in 0..<neighbourCount {
            let raw = get(neighboursAt + 4 * i, 4)
            guard let n = Int(exactly: raw), n < groupSize, n != rank else {
                return .failure("neighbour \(raw) is not another member of a group of \(groupSize)")
            }
            neighbours.append(n)
        }
        let address = Array(b[s + addressAt..<s + addressAt + addressLength])
        let descriptor = Array(b[s + descriptorAt..<s + descriptorAt + descriptorLength])
        return .success(GroupRecord(rank: rank, groupSize: claimedSize, nonce: get(16, 8), address: address, descriptor: descriptor,
                                    allToAll: allToAll, neighbours: neighbours))
    }

    private static func put(_ b: inout [UInt8], _ at: Int, _ v: UInt64, _ n: Int) {
        for i in 0..<n { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }

    /// The hello a dialer sends: "VKVH", the group's nonce, its rank (16 bytes; rdmacm may pad).
    static func hello(nonce: UInt64, rank: Int) -> [UInt8] {
        var b = Array("VKVH".utf8) + [UInt8](repeating: 0, count: 12)
        put(&b, 4, nonce, 8)
        put(&b, 12, UInt64(rank), 4)
        return b
    }

    /// The (nonce, rank) of a hello, nil when it is not one.
    static func readHello(_ b: [UInt8]) -> (nonce: UInt64, rank: Int)? {
        guard b.count >= 16, Array(b[0..<4]) == Array("VKVH".utf8) else { return nil }
        var nonce: UInt64 = 0
        var rank: UInt64 = 0
        for i in 0..<8 { nonce |= UInt64(b[4 + i]) << (8 * UInt64(i)) }
        for i in 0..<4 { rank |= UInt64(b[12 + i]) << (8 * UInt64(i)) }
        guard let r = Int(exactly: rank) else { return nil }
        return (nonce, r)
    }
}
