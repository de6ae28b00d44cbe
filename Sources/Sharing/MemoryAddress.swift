/// The address of memory that a Sendable object keeps but does not guard, e.g. a host buffer's
/// bytes, the pages a memory region covers, or a Vulkan mapping: as with the NIC, whoever reads
/// or writes the bytes orders those accesses.
package struct MemoryAddress: @unchecked Sendable {  // the address never changes; reading and writing the bytes is their owner's to synchronise
    package let pointer: UnsafeMutableRawPointer

    package init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}
