/// A pointer to a libibverbs or librdmacm object, as the class that owns the object stores it.
/// The wrapper is what lets such a class be checked `Sendable`: the pointer is Sendable here
/// and nowhere else. Take `pointer` out only to hand it to C.
struct CHandle<Pointee>: @unchecked Sendable {  // the pointer never changes; its pointee is only read or passed to libibverbs/librdmacm calls, which are thread-safe for it
    let pointer: UnsafeMutablePointer<Pointee>

    init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }
}

/// The address of memory that a Sendable object keeps but does not guard, e.g. a host buffer's
/// bytes or the pages a memory region covers: as with the NIC, whoever reads or writes the
/// bytes orders those accesses. VulkanMemory keeps its mappings in it too.
package struct MemoryAddress: @unchecked Sendable {  // the address never changes; reading and writing the bytes is their owner's to synchronise
    package let pointer: UnsafeMutableRawPointer

    package init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}
