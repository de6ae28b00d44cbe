/// Everything measured in one run; what an interrupted run had measured is kept.
public struct PingPongResult: Codable, Sendable {
    public var operation: RDMAOperation
    public var measurement: MeasurementKind
    public var memory: String
    public var device: String
    public var latency: [LatencyStatistics] = []
    public var bandwidth: [BandwidthStatistics] = []
    public var interrupted = false
    /// Messages up to this many bytes went inline (what was asked, capped by both QPs).
    public var inlineBytes = 0
}
