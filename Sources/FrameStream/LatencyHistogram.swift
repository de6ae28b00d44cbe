/// Latencies in nanoseconds, kept in log-linear buckets (64 per power of two, so a percentile is
/// within 1/64 of the true value; below 128 ns exact) with an exact count and maximum: bounded
/// memory however many frames a stream carries.
public struct LatencyHistogram: Sendable, Equatable {
    static let subBuckets = 64
    private var counts = [UInt64](repeating: 0, count: 64 * 64)
    public private(set) var count: UInt64 = 0
    public private(set) var max: UInt64 = 0
    public private(set) var min: UInt64 = .max

    public init() {}

    static func index(_ v: UInt64) -> Int {
        if v < UInt64(2 * subBuckets) { return Int(v) }
        let shift = (63 - v.leadingZeroBitCount) - 6  // v >> shift lies in 64...127
        return (shift + 1) * subBuckets + Int(v >> UInt64(shift)) - subBuckets
    }

    /// The largest value that falls into bucket `i`.
    static func upperBound(_ i: Int) -> UInt64 {
        if i < 2 * subBuckets { return UInt64(i) }
        let shift = i / subBuckets - 1
        let mantissa = UInt64(i % subBuckets + subBuckets)
        return ((mantissa + 1) << UInt64(shift)) &- 1
    }

    public mutating func record(_ nanoseconds: UInt64) {
        counts[Self.index(nanoseconds)] += 1
        count += 1
        max = Swift.max(max, nanoseconds)
        min = Swift.min(min, nanoseconds)
    }

    /// The value at or below which a fraction `p` (0...1) of the samples lie (0 when empty); the
    /// bucket's upper bound, capped at the exact maximum.
    public func percentile(_ p: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = Swift.max(1, UInt64((p * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() where c > 0 {
            seen += c
            if seen >= rank { return Swift.min(Self.upperBound(i), max) }
        }
        return max
    }

    public mutating func merge(_ other: LatencyHistogram) {
        for i in counts.indices { counts[i] += other.counts[i] }
        count += other.count
        max = Swift.max(max, other.max)
        min = Swift.min(min, other.min)
    }

    /// p50, p99, p99.9 and max in microseconds, for reports.
    public var summary: Summary {
        Summary(count: count, p50: Double(percentile(0.5)) / 1000, p99: Double(percentile(0.99)) / 1000,
                p999: Double(percentile(0.999)) / 1000, max: Double(max) / 1000)
    }

    public struct Summary: Sendable, Equatable, Codable {
        public var count: UInt64
        public var p50: Double
        public var p99: Double
        public var p999: Double
        public var max: Double
    }
}
