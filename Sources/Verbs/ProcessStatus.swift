#if canImport(Glibc)
import Glibc
#endif

/// The bytes of the file at `path` (`fopen`, `fread`); nil when it holds more than `limit`.
public func readFileBytes(_ path: String, limit: Int) throws(VerbsError) -> [UInt8]? {
    guard let file = fopen(path, "rb") else { throw .system(verb: "open \(path)", errno: errno) }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n == 0 { return bytes }
        bytes += chunk[0..<n]
        if bytes.count > limit { return nil }
    }
}

/// The first word of a field of this process' /proc/self/status ("VmRSS", "VmPin", "CapEff"),
/// nil where the file or the field is missing. Memory fields are in KiB; CapEff is hex.
public func processStatusField(_ name: String) -> String? {
    guard let bytes = try? readFileBytes("/proc/self/status", limit: 1 << 20) else { return nil }
    let prefix = name + ":"
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix(prefix) {
        return line.dropFirst(prefix.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init)
    }
    return nil
}
