#if canImport(Glibc)
import Glibc
#endif

/// Calls `body` with a C array of C strings (`const char* const*`) that lives only for the call,
/// as `ppEnabledExtensionNames` and `ppEnabledLayerNames` want.
func withCStringArray<R, E: Error>(
    _ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UInt32) throws(E) -> R
) throws(E) -> R {
    let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let array = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: max(1, copies.count))
    defer { array.deallocate() }
    for (i, copy) in copies.enumerated() { array[i] = UnsafePointer(copy) }
    return try body(strings.isEmpty ? nil : UnsafePointer(array), UInt32(strings.count))
}

/// Reads a fixed-size `char[N]` member (a Vulkan name field) as a String.
func string<T>(fromCharArray tuple: T) -> String {
    withUnsafeBytes(of: tuple) { bytes in
        String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
}
