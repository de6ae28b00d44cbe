import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation

// What every command shares: failing with a message, sizes in words, JSON, a clock.

/// Prints a message for a typed error and exits non-zero.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("vkverbs: error: \(message)\n".utf8))
    exit(1)
}

func fail(_ error: any Error) -> Never {
    FileHandle.standardError.write(Data("vkverbs: error: \(error)\n".utf8))
    exit(1)
}

func formatBytes(_ bytes: UInt64) -> String {
    let units: [(UInt64, String)] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
    for (unit, name) in units where bytes >= unit {
        let value = Double(bytes) / Double(unit)
        return value == value.rounded() ? "\(Int(value)) \(name)" : String(format: "%.1f %@", value, name)
    }
    return "\(bytes) B"
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}
