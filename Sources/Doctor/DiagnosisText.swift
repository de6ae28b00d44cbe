import Foundation

/// Sizes as people read them: "256 MiB", "1.5 GiB", "512 B" (powers of 1024).
public func formatBytes(_ bytes: UInt64) -> String {
    let units: [(UInt64, String)] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    for (unit, name) in units where bytes >= unit {
        let value = Double(bytes) / Double(unit)
        return value == value.rounded() ? "\(Int(value)) \(name)" : String(format: "%.1f %@", value, name)
    }
    return "\(bytes) B"
}

extension Diagnosis {
    /// The report as `vkverbs doctor` prints it: one line per check, the cause and the fix
    /// indented under each one that is not fine, the verdict last.
    public var text: String {
        var lines: [String] = []
        for c in checks {
            let mark: String
            switch c.status {
            case .ok: mark = "[ ok ]"
            case .info: mark = "[info]"
            case .warn: mark = "[warn]"
            case .fail: mark = "[FAIL]"
            case .skip: mark = "[skip]"
            }
            lines.append("\(mark) \(c.title): \(c.found)")
            if let cause = c.cause { lines.append("       cause: \(cause)") }
            if let fix = c.fix { lines.append("       fix:   \(fix)") }
        }
        lines.append("")
        lines.append("verdict: \(verdict.rawValue) (exit \(exitStatus)): \(summary)")
        return lines.joined(separator: "\n")
    }
}
