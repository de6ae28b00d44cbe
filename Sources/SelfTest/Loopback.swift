import Dispatch
import Verbs

/// Runs the exchange with both ends in this process: a listener on `address` served from
/// a second thread, and a client that connects to it over the same device.
public enum Loopback {
    public static func run(address: String, options: ExchangeOptions = .init()) throws(VerbsError) -> (server: ExchangeReport, client: ExchangeReport) {
        let listener = try Listener(address: address, port: 0)
        let port = listener.port
        let box = ResultSlot<ExchangeReport, VerbsError>()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            box.set(Result { () throws(VerbsError) in try Exchange.serve(listener: listener, options: options) })
            done.signal()
        }
        let client = Result { () throws(VerbsError) in try Exchange.connect(host: address, port: port, options: options) }
        // The server's own waits are bounded by stepTimeout; this bounds the whole thread.
        let limit = DispatchTime.now() + .seconds(Int(options.stepTimeout.components.seconds) * 4 + 10)
        if done.wait(timeout: limit) == .timedOut {
            throw VerbsError.timedOut(operation: "loopback server thread", after: options.stepTimeout * 4)
        }
        guard let server = box.get() else {
            throw VerbsError.timedOut(operation: "loopback server thread", after: options.stepTimeout * 4)
        }
        let report = try server.get()
        return (report, try client.get())
    }
}
