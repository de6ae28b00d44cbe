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
