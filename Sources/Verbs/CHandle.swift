/// A pointer to a libibverbs or librdmacm object, as the class that owns the object stores it.
/// The wrapper is what lets such a class be checked `Sendable`: the pointer is Sendable here
/// and nowhere else. Take `pointer` out only to hand it to C.
struct CHandle<Pointee>: @unchecked Sendable {  // the pointer never changes; its pointee is only read or passed to libibverbs/librdmacm calls, which are thread-safe for it
    let pointer: UnsafeMutablePointer<Pointee>

    init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }
}
