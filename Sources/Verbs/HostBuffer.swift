#if canImport(Glibc)
import Glibc
#endif
import Sharing

/// Page-aligned host memory owned by Swift; freed when the last reference
/// (e.g. a MemoryRegion's) goes.
public final class HostBuffer: Sendable {
    private let memory: MemoryAddress
    public let count: Int

    /// Allocates `count` zeroed bytes aligned to the page size.
    public init(count: Int, alignment: Int = Int(sysconf(Int32(_SC_PAGESIZE)))) throws(VerbsError) {
        guard count > 0 else { throw VerbsError.invalidArgument("buffer size must be > 0, got \(count)") }
        var p: UnsafeMutableRawPointer?
        let rc = posix_memalign(&p, alignment, count)
        guard rc == 0, let p else { throw VerbsError.fromErrno("posix_memalign", rc) }
        memset(p, 0, count)
        memory = MemoryAddress(p)
        self.count = count
    }

    deinit { free(pointer) }

    /// The first byte; the buffer is `count` bytes long.
    public var pointer: UnsafeMutableRawPointer { memory.pointer }

    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: count) }
}
