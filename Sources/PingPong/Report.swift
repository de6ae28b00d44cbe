/// perftest-style tables, and CSV.
public enum Report {
    public static func table(_ r: PingPongResult) -> String {
        var lines: [String] = []
        let rule = String(repeating: "-", count: 100)
        lines.append(rule)
        lines.append(" vkverbs pingpong: \(r.operation.rawValue) \(r.measurement.rawValue), \(r.memory), device \(r.device)")
        if r.measurement == .latency && r.operation.halvesRoundTrip {
            lines.append(" latency is half the round trip, as perftest reports it; two largest samples dropped")
        }
        if r.operation != .read {
            lines.append(r.inlineBytes > 0 ? " messages up to \(r.inlineBytes) bytes posted inline (IBV_SEND_INLINE; --inline 0 turns it off)"
                                           : " no inline data")
        }
        lines.append(rule)
        if r.measurement == .latency {
            lines.append(row(["#bytes", "#iterations", "t_min[usec]", "t_max[usec]", "t_typical[usec]", "t_avg[usec]",
                              "t_stdev[usec]", "99% [usec]", "99.9% [usec]"]))
            for s in r.latency {
                lines.append(row([String(s.bytes), String(s.iterations)] + [s.min, s.max, s.typical, s.average, s.stdev, s.p99, s.p999].map { fixed($0) }))
            }
        } else {
            lines.append(row(["#bytes", "#iterations", "BW peak[MB/sec]", "BW average[MB/sec]", "BW average[Gb/sec]", "MsgRate[Mpps]"]))
            for s in r.bandwidth {
                lines.append(row([String(s.bytes), String(s.iterations), fixed(s.peakMBps), fixed(s.averageMBps),
                                  fixed(s.averageGbps, 4), fixed(s.messageRateMpps, 6)]))
            }
        }
        lines.append(rule)
        if r.interrupted { lines.append(" interrupted: the table holds what was measured before the stop") }
        return lines.joined(separator: "\n")
    }

    public static func csv(_ r: PingPongResult) -> String {
        if r.measurement == .latency {
            return (["bytes,iterations,t_min_us,t_max_us,t_typical_us,t_avg_us,t_stdev_us,p99_us,p999_us"] + r.latency.map { s in
                ([String(s.bytes), String(s.iterations)] + [s.min, s.max, s.typical, s.average, s.stdev, s.p99, s.p999].map { fixed($0) })
                    .joined(separator: ",")
            }).joined(separator: "\n")
        }
        return (["bytes,iterations,bw_peak_MBps,bw_avg_MBps,bw_avg_Gbps,msg_rate_Mpps"] + r.bandwidth.map { s in
            [String(s.bytes), String(s.iterations), fixed(s.peakMBps), fixed(s.averageMBps), fixed(s.averageGbps, 4),
             fixed(s.messageRateMpps, 6)].joined(separator: ",")
        }).joined(separator: "\n")
    }

    private static func row(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in
            let width = i < 2 ? 12 : 17
            return String(repeating: " ", count: max(1, width - c.count)) + c
        }.joined()
    }

    /// `x` with `digits` decimals, never in exponent notation (perftest prints plain decimals).
    static func fixed(_ x: Double, _ digits: Int = 2) -> String {
        guard x.isFinite else { return x.isNaN ? "nan" : (x < 0 ? "-inf" : "inf") }
        var scale = 1
        for _ in 0..<digits { scale *= 10 }
        let scaled = Int((abs(x) * Double(scale)).rounded())
        let whole = String(scaled / scale)
        let fraction = String(scaled % scale)
        let sign = x < 0 && scaled != 0 ? "-" : ""
        if digits == 0 { return sign + whole }
        return sign + whole + "." + String(repeating: "0", count: digits - fraction.count) + fraction
    }
}
