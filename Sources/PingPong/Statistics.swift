/// Latency figures as perftest prints them, in microseconds.
public struct LatencyStatistics: Codable, Sendable, Equatable {
    public var bytes: Int
    public var iterations: Int
    public var min: Double
    public var max: Double
    /// The median, perftest's t_typical.
    public var typical: Double
    public var average: Double
    public var stdev: Double
    public var p99: Double
    public var p999: Double

    /// `samples` are round trips (or single reads) of `nanosecondsPerSample` nanoseconds each (1:
    /// in nanoseconds; the ping-pong passes cycle-counter ticks and `CycleClock`'s rate, so no
    /// pass over the samples converts them first); `halve` gives one-way figures.
    /// As perftest does, the two largest samples are dropped when there are enough.
    /// `samples` is taken over (`consuming`): a caller that passes its last use of the array has
    /// it sorted in place, without a copy.
    public init?(bytes: Int, samples: consuming [UInt64], halve: Bool, nanosecondsPerSample: Double = 1) {
        let count = samples.count
        guard count > 0 else { return nil }
        var sorted = consume samples
        sorted.sort()
        if sorted.count > 10 { sorted.removeLast(2) }
        let scale = nanosecondsPerSample * (halve ? 0.5 : 1.0) / 1000.0
        let n = Double(sorted.count)
        // Straight from the sorted samples, scaled as each is read: no array of converted copies.
        func us(_ k: Int) -> Double { Double(sorted[k]) * scale }
        func percentile(_ p: Double) -> Double { us(Swift.min(sorted.count - 1, Int((p * n).rounded(.up)) - 1)) }
        var sum = 0.0
        for x in sorted { sum += Double(x) * scale }
        let avg = sum / n
        var squares = 0.0
        for x in sorted {
            let d = Double(x) * scale - avg
            squares += d * d
        }
        self.bytes = bytes
        iterations = count
        min = us(0)
        max = us(sorted.count - 1)
        let mid = sorted.count / 2
        typical = sorted.count % 2 == 1 ? us(mid) : (us(mid - 1) + us(mid)) / 2
        average = avg
        stdev = (squares / n).squareRoot()
        p99 = percentile(0.99)
        p999 = percentile(0.999)
    }
}

/// Bandwidth figures as perftest prints them.
public struct BandwidthStatistics: Codable, Sendable, Equatable {
    public var bytes: Int
    public var iterations: Int
    /// 10^6 bytes per second, as perftest's MB/sec.
    public var peakMBps: Double
    public var averageMBps: Double
    public var averageGbps: Double
    /// Millions of messages per second.
    public var messageRateMpps: Double

    /// `checkpoints`: (messages completed, nanoseconds since the measurement started) at each
    /// signaled completion, in order. Peak is the best rate over an eighth of the run, so a
    /// burst of completions reported together cannot pass for a rate.
    public init?(bytes: Int, checkpoints: [(count: Int, nanoseconds: UInt64)]) {
        guard let last = checkpoints.last, last.nanoseconds > 0, last.count > 0 else { return nil }
        let seconds = Double(last.nanoseconds) / 1e9
        averageMBps = Double(bytes) * Double(last.count) / seconds / 1e6
        averageGbps = averageMBps * 8 / 1000
        messageRateMpps = Double(last.count) / seconds / 1e6
        // Windows of at least an eighth of the run's time: completions polled together carry
        // almost the same timestamp, and must not make a rate of their own.
        let points = [(count: 0, nanoseconds: UInt64(0))] + checkpoints
        let minimum = last.nanoseconds / 8
        var peak = averageMBps
        var j = 0
        for k in 0..<points.count {
            j = Swift.max(j, k + 1)
            while j < points.count && points[j].nanoseconds - points[k].nanoseconds < minimum { j += 1 }
            guard j < points.count else { break }
            let dn = points[j].count - points[k].count
            let dt = points[j].nanoseconds - points[k].nanoseconds
            if dt > 0, dn > 0 { peak = Swift.max(peak, Double(bytes) * Double(dn) / (Double(dt) / 1e9) / 1e6) }
        }
        peakMBps = peak
        self.bytes = bytes
        iterations = last.count
    }
}
