import Dispatch
import Verbs

/// Two ends of one rdmacm RC connection in this process, each with its own PD, an
/// event channel and separate send and receive CQs: the fixture traffic tests reuse.
public final class ConnectedPair: Sendable {
    public let server: Connection
    public let client: Connection

    public init(address: String, capabilities: QueuePairCapabilities = .init(),
                serverPrivateData: [UInt8] = [], clientPrivateData: [UInt8] = [],
                timeout: Duration = .seconds(30)) throws(VerbsError) {
        let listener = try Listener(address: address, port: 0)
        let port = listener.port
        let box = ResultSlot<Connection, VerbsError>()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            box.set(Result { () throws(VerbsError) -> Connection in
                let request = try listener.accept(timeout: timeout)
                let (pd, send, receive) = try Self.resources(request.context)
                return try request.prepare(pd: pd, sendCQ: send, receiveCQ: receive, capabilities: capabilities)
                    .accept(privateData: serverPrivateData, timeout: timeout)
            })
            done.signal()
        }
        let route = try ResolvedRoute.resolve(host: address, port: port, timeout: timeout)
        let (pd, send, receive) = try Self.resources(route.context)
        let clientResult: Result<Connection, VerbsError>
        do {
            clientResult = .success(try route.prepare(pd: pd, sendCQ: send, receiveCQ: receive, capabilities: capabilities)
                .connect(privateData: clientPrivateData, timeout: timeout))
        } catch {
            clientResult = .failure(error)
        }
        _ = done.wait(timeout: .now() + .seconds(Int(timeout.components.seconds) + 5))
        // The slot is read under its lock, so a server thread still running after the wait gave
        // up is seen as "not there yet", never as a value half written.
        guard let serverResult = box.get() else { throw VerbsError.timedOut(operation: "accepting in-process", after: timeout) }
        server = try serverResult.get()
        client = try clientResult.get()
    }

    static func resources(_ context: Context) throws(VerbsError) -> (ProtectionDomain, CompletionQueue, CompletionQueue) {
        let pd = try ProtectionDomain(context: context)
        let channel = try CompletionChannel(context: context)
        return (pd, try CompletionQueue(context: context, capacity: 256, channel: channel),
                try CompletionQueue(context: context, capacity: 256, channel: channel))
    }
}
