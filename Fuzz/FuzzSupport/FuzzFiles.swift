// Files for the fuzz targets' plain modes (replaying a corpus, writing seeds), with Glibc only:
// no Foundation in a fuzzing binary.
#if canImport(Glibc)
import Glibc
#endif

/// Prints `message` to stderr, prefixed with the program's name, and exits with status 2.
public func fail(_ message: String) -> Never {
    let name = CommandLine.arguments.first.map { String($0.split(separator: "/").last ?? "fuzzer") } ?? "fuzzer"
    let line = Array("\(name): \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(2)
}

public func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

public func readFile(_ path: String) -> [UInt8] {
    guard let file = fopen(path, "rb") else { fail("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    var contents: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if count == 0 { break }
        contents += chunk[0..<count]
    }
    if ferror(file) != 0 { fail("cannot read \(path)") }
    return contents
}

public func writeFile(_ path: String, _ bytes: [UInt8]) {
    guard let file = fopen(path, "wb") else { fail("cannot create \(path): \(String(cString: strerror(errno)))") }
    let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    if fclose(file) != 0 || written != bytes.count { fail("cannot write \(path)") }
}

/// Creates `path` unless it is there.
public func makeDirectory(_ path: String) {
    if mkdir(path, 0o755) != 0 && errno != EEXIST { fail("cannot create \(path): \(String(cString: strerror(errno)))") }
}

/// Regular files directly in `path`, sorted, hidden ones skipped.
public func filesIn(_ path: String) -> [String] {
    guard let dir = opendir(path) else { fail("cannot list \(path): \(String(cString: strerror(errno)))") }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if !name.hasPrefix(".") && !isDirectory(path + "/" + name) { names.append(name) }
    }
    return names.sorted().map { path + "/" + $0 }
}

/// The files `paths` name, a directory standing for the files directly in it.
public func inputFiles(_ paths: [String]) -> [String] {
    paths.flatMap { isDirectory($0) ? filesIn($0) : [$0] }
}
