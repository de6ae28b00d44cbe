import Verbs
import VulkanMemory

/// What the ping-pong reports; a peer's bad input is `.badRequest` or `.protocolError`, never a trap.
public enum PingPongError: Error, CustomStringConvertible, Sendable {
    case verbs(VerbsError)
    case vulkan(VulkanError)
    case protocolError(String)
    case peerGone(String)
    case timedOut(String)
    case interrupted
    /// The peer check with the shared secret failed (either side).
    case authenticationFailed(String)
    /// The server refused the connection and said why (busy, bad request, authentication).
    case rejected(String)
    /// A value from the peer (a handshake or control message field) is outside what this side
    /// accepts; the session ends, the server goes on.
    case badRequest(String)

    public var description: String {
        switch self {
        case let .verbs(e): return e.description
        case let .vulkan(e): return "Vulkan: \(e)"
        case let .protocolError(text): return "protocol: \(text)"
        case let .peerGone(text): return "the peer went away \(text)"
        case let .timedOut(text): return "timed out \(text)"
        case .interrupted: return "interrupted"
        case let .authenticationFailed(text): return "authentication failed: \(text)"
        case let .rejected(text): return "the server refused the connection: \(text)"
        case let .badRequest(text): return "bad request: \(text)"
        }
    }
}

/// Runs a verbs call, its error as the ping-pong's.
@inline(__always)
func v<T>(_ body: () throws(VerbsError) -> T) throws(PingPongError) -> T {
    do { return try body() } catch { throw .verbs(error) }
}
