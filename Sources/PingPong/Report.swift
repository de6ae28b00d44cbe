/// perftest-style tables, and CSV.
public enum Report {
    /// With `gbits` (perftest's --report_gbits) bandwidth peak and average are in Gb/sec.
    public static func table(_ r: PingPongResult, gbits: Bool = false) -> String {
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
            if gbits {
                lines.append(row(["#bytes", "#iterations", "BW peak[Gb/sec]", "BW average[Gb/sec]", "MsgRate[Mpps]"]))
                for s in r.bandwidth {
                    lines.append(row([String(s.bytes), String(s.iterations), fixed(s.peakMBps * 8 / 1000, 4), fixed(s.averageGbps, 4),
                                      fixed(s.messageRateMpps, 6)]))
                }
            } else {
                lines.append(row(["#bytes", "#iterations", "BW peak[MB/sec]", "BW average[MB/sec]", "BW average[Gb/sec]", "MsgRate[Mpps]"]))
                for s in r.bandwidth {
                    lines.append(row([String(s.bytes), String(s.iterations), fixed(s.peakMBps), fixed(s.averageMBps),
                                      fixed(s.averageGbps, 4), fixed(s.messageRateMpps, 6)]))
                }
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

    /// The run as perftest's `--out_json` file: `test_info` and `results` with perftest's keys,
    /// so a script that reads `ib_write_lat --out_json` reads this unchanged. perftest rewrites its
    /// file for each size of a sweep and keeps the last; `results` is the last size too, and
    /// `vkverbs_results` adds every size with the same keys. Bandwidth is in perftest's units:
    /// MB/sec of 2^20 bytes, or Gb/sec with `gbits` (`--report_gbits`).
    public static func perftestJSON(_ r: PingPongResult, gbits: Bool = false) -> String {
        let verb: String
        switch r.operation {
        case .write: verb = "RDMA_Write"
        case .writeImm: verb = "RDMA_Write_imm"
        case .send: verb = "Send"
        case .read: verb = "RDMA_Read"
        }
        let info: [(String, String)] = [
            ("test", quoted("\(verb)_\(r.measurement == .latency ? "Latency" : "BW")_Test")),
            ("Dual_port", quoted("OFF")), ("Device", quoted(r.device)), ("Number_of_qps", "1"),
            ("Transport_type", quoted("IB")), ("Connection_type", quoted("RC")), ("Using_SRQ", quoted("OFF")),
            ("Max_inline_data", String(r.inlineBytes)), ("rdma_cm_QPs", quoted("ON")), ("Data_ex_method", quoted("rdma_cm")),
            ("vkverbs_memory", quoted(r.memory)),
        ]
        var rows: [[(String, String)]]
        if r.measurement == .latency {
            rows = r.latency.map { s in
                [("MsgSize", String(s.bytes)), ("n_iterations", String(s.iterations)), ("t_min", fixed(s.min)), ("t_max", fixed(s.max)),
                 ("t_typical", fixed(s.typical)), ("t_avg", fixed(s.average)), ("t_stdev", fixed(s.stdev)),
                 ("percentile_99", fixed(s.p99)), ("percentile_99.9", fixed(s.p999))]
            }
        } else {
            rows = r.bandwidth.map { s in
                let (peak, average) = gbits ? (s.peakMBps * 8 / 1000, s.averageGbps)
                                            : (s.peakMBps * 1e6 / 1_048_576, s.averageMBps * 1e6 / 1_048_576)
                return [("MsgSize", String(s.bytes)), ("n_iterations", String(s.iterations)), ("BW_peak", fixed(peak)),
                        ("BW_average", fixed(average)), ("MsgRate", fixed(s.messageRateMpps, 6))]
            }
        }
        func object(_ pairs: [(String, String)], indent: String) -> String {
            "{\n" + pairs.map { "\(indent)  \(quoted($0.0)): \($0.1)" }.joined(separator: ",\n") + "\n\(indent)}"
        }
        var top = [("test_info", object(info, indent: ""))]
        if let last = rows.last { top.append(("results", object(last, indent: ""))) }
        top.append(("vkverbs_results", "[" + rows.map { object($0, indent: "  ") }.joined(separator: ", ") + "]"))
        if r.interrupted { top.append(("vkverbs_interrupted", "true")) }
        return "{\n" + top.map { "\(quoted($0.0)): \($0.1)" }.joined(separator: ",\n") + "\n}\n"
    }

    /// A JSON string literal.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
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
