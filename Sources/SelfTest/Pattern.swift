/// Deterministic test bytes: each 8-byte word is a mix of a seed and its index, so a
/// shifted, truncated or stale buffer never matches by accident.
public enum Pattern {
    @inline(__always)
    static func word(_ seed: UInt64, _ index: Int) -> UInt64 {
        var z = seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    public static func fill(_ buffer: UnsafeMutableRawBufferPointer, count: Int, seed: UInt64) {
        precondition(count <= buffer.count)
        let words = count / 8
        for i in 0..<words { buffer.storeBytes(of: word(seed, i).littleEndian, toByteOffset: i * 8, as: UInt64.self) }
        let tail = word(seed, words).littleEndian
        withUnsafeBytes(of: tail) { t in
            for j in 0..<(count - words * 8) { buffer[words * 8 + j] = t[j] }
        }
    }

    /// The offset of the first byte that differs from the pattern, or nil when all `count` match.
    public static func firstMismatch(_ buffer: UnsafeRawBufferPointer, count: Int, seed: UInt64) -> Int? {
        guard count <= buffer.count else { return buffer.count }
        let words = count / 8
        for i in 0..<words {
            let diff = buffer.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) ^ word(seed, i).littleEndian
            // Little-endian in memory: the lowest differing bit is in the first differing byte.
            if diff != 0 { return i * 8 + UInt64(littleEndian: diff).trailingZeroBitCount / 8 }
        }
        let tail = word(seed, words).littleEndian
        return withUnsafeBytes(of: tail) { t -> Int? in
            for j in 0..<(count - words * 8) where buffer[words * 8 + j] != t[j] { return words * 8 + j }
            return nil
        }
    }
}
