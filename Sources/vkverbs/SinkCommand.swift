import ArgumentParser
import Foundation
import SelfTest
import Verbs

/// A passive peer for tests and experiments: accepts one connection, exposes a buffer peers may
/// RDMA-write and read (its descriptor goes out in the accept's private data), and stays until the
/// peer disconnects or `--hold` runs out. Killing it mid-transfer is how tests play a dying peer.
struct SinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sink",
        abstract: "Accept one connection and expose a remote-writable buffer (a peer for tests).",
        shouldDisplay: false)

    @Option(help: "Address to listen on.") var bind: String
    @Option(help: "Port.") var port: UInt16 = 18530
    @Option(help: "Buffer size in bytes.") var size: Int = 1 << 20
    @Option(help: "Seconds to wait for the client and then to hold the connection.") var hold: Int = 60

    func validate() throws {
        if size <= 0 { throw ValidationError("--size must be at least 1 byte") }
        if hold <= 0 { throw ValidationError("--hold must be positive") }
    }

    func run() throws {
        do {
            let listener = try Listener(address: bind, port: port)
            print("sink: listening on \(bind):\(listener.port)")
            FileHandle.standardOutput.synchronizeFile()
            let request = try listener.accept(timeout: .seconds(hold))
            let pd = try ProtectionDomain(context: request.context)
            let buffer = try pd.register(try HostBuffer(count: size), access: .remote)
            let cq = try CompletionQueue(context: request.context, capacity: 16)
            let connection = try request.prepare(pd: pd, sendCQ: cq, receiveCQ: cq)
                .accept(privateData: buffer.remoteBuffer.encoded, timeout: .seconds(hold))
            print("sink: connected, exposing \(size) bytes")
            FileHandle.standardOutput.synchronizeFile()
            _ = try connection.waitForPeerDisconnect(timeout: .seconds(hold))
            print("sink: done")
        } catch let error as VerbsError {
            fail(error)
        }
    }
}
