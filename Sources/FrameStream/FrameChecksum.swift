/// The checksum a frame's header carries: the sender computes it on the CPU over the bytes it
/// sends, the receiver checks it on the CPU (`FrameReceiver`, host-visible rings) or on the GPU
/// (`GPUFrameChecksum`, the shader in Shaders/frame-checksum.comp), and all three compute this one
/// function.
///
/// Word `i` of a frame is the little-endian 32-bit word at byte `4i`, bytes past the frame's end
/// taken as zero. With `seed` mixing the frame number and the length,
/// `x_i = fmix32(word_i ^ (i * 0x9E3779B9) ^ seed)`, `lo = Σ x_i`, `hi = Σ x_i * (2i + 1)` (mod 2^32),
/// and the checksum is `(hi ^ fmix32(seed ^ 0x27D4EB2F)) << 32 | (lo ^ seed)`. Sums are the same in
/// any order, so GPU invocations each add a share; every word is mixed with its position, so a
/// word moved, changed or swapped with another changes the result (a corruption check, not a MAC).
public enum FrameChecksum {
    /// MurmurHash3's 32-bit finalizer: every input bit affects every output bit.
    @inline(__always)
    static func fmix32(_ value: UInt32) -> UInt32 {
        var h = value
        h ^= h >> 16
        h = h &* 0x85EB_CA6B
        h ^= h >> 13
        h = h &* 0xC2B2_AE35
        h ^= h >> 16
        return h
    }

    /// The seed of frame `frame`'s checksum over `length` bytes.
    public static func seed(frame: UInt64, length: Int) -> UInt32 {
        fmix32(UInt32(truncatingIfNeeded: frame)
            ^ fmix32(UInt32(truncatingIfNeeded: frame >> 32) ^ UInt32(truncatingIfNeeded: length) ^ 0x2545_F491))
    }

    /// The two sums over `bytes` (what the shader adds up).
    public static func sums(_ bytes: UnsafeRawBufferPointer, seed: UInt32) -> (lo: UInt32, hi: UInt32) {
        let whole = bytes.count / 4
        var lo: UInt32 = 0, hi: UInt32 = 0
        if whole > 0 {
            let base = bytes.baseAddress!
            for i in 0..<whole {
                let index = UInt32(truncatingIfNeeded: i)
                let x = fmix32(base.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self).littleEndian ^ (index &* 0x9E37_79B9) ^ seed)
                lo = lo &+ x
                hi = hi &+ x &* (index &* 2 &+ 1)
            }
        }
        if bytes.count > whole * 4 {
            var word: UInt32 = 0
            for (n, b) in bytes[(whole * 4)...].enumerated() { word |= UInt32(b) << (8 * UInt32(n)) }
            let index = UInt32(truncatingIfNeeded: whole)
            let x = fmix32(word ^ (index &* 0x9E37_79B9) ^ seed)
            lo = lo &+ x
            hi = hi &+ x &* (index &* 2 &+ 1)
        }
        return (lo, hi)
    }

    /// The checksum from the sums and the seed.
    public static func finish(lo: UInt32, hi: UInt32, seed: UInt32) -> UInt64 {
        UInt64(hi ^ fmix32(seed ^ 0x27D4_EB2F)) << 32 | UInt64(lo ^ seed)
    }

    /// The checksum of frame `frame` whose bytes are `bytes`.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, frame: UInt64) -> UInt64 {
        let seed = seed(frame: frame, length: bytes.count)
        let (lo, hi) = sums(bytes, seed: seed)
        return finish(lo: lo, hi: hi, seed: seed)
    }
}
