import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import NumberedStream
import Verbs

/// A numbered, checksummed stream between two hosts that reconnects after faults and proves nothing
/// was lost: the fault and soak runs of the reliability suite use it (scripts/stream-two-hosts, scripts/soak).
struct StreamCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream",
        abstract: "Stream numbered, checksummed messages to a receiver, reconnecting after faults; verify nothing is lost.",
        discussion: """
        Start `vkverbs stream --server` on one host and `vkverbs stream --client HOST --bytes 1G` on the other. \
        When the connection breaks (link down, QP error, peer restart of the connection), the sender \
        reconnects for up to --reconnect-within seconds and the receiver says where to resume; the \
        receiver accepts message n only after 0..n-1 with a matching checksum. At the end both print \
        the count and digest of what the receiver accepted, which must be equal; any gap, duplicate, bad \
        checksum or mismatch is an error (exit 1). The receiver serves one stream and exits.
        """)

    @Flag(help: "Receive one stream.") var server = false
    @Option(help: "Send to the receiver at HOST.") var client: String?
    @Option(help: "Address to listen on (server).") var bind: String?
    @Option(help: "Port.") var port: UInt16 = 18540
    @Option(help: "Messages to send (client).") var messages: UInt64?
    @Option(help: "Bytes to send instead of a message count, e.g. 10G, 512M (client).") var bytes: String?
    @Option(help: "Payload bytes per message.") var messageSize: Int = 64 << 10
    @Option(help: "Messages in flight.") var window: Int = 16
    @Option(help: "Seconds any wait for the peer may take while connected.") var timeout: Int = 10
    @Option(help: "Seconds to keep trying to get a connection back after a fault.") var reconnectWithin: Int = 90
    @Option(help: ArgumentHelp("Memory one sender may make the receiver register, e.g. 64M (server); a sender asking more is refused.",
                               valueName: "SIZE"))
    var maxMemory: String = "64M"
    @Flag(help: "Print a progress line with the process' resident memory now and then.") var progress = false
    @Option(help: "With --progress: a line every this many messages.") var progressEvery: UInt64 = 4096

    func validate() throws {
        if server == (client != nil) { throw ValidationError("give exactly one of --server and --client HOST") }
        if messageSize <= 0 || messageSize > 16 << 20 { throw ValidationError("--message-size must be 1 byte to 16 MiB") }
        if window <= 0 || window > 1024 { throw ValidationError("--window must be 1 to 1024") }
        if timeout <= 0 || reconnectWithin <= 0 { throw ValidationError("--timeout and --reconnect-within must be positive") }
        if client != nil && (messages == nil) == (bytes == nil) { throw ValidationError("give --messages or --bytes") }
        if progressEvery == 0 { throw ValidationError("--progress-every must be at least 1") }
        if let bytes, parseBytes(bytes) == nil { throw ValidationError("--bytes \(bytes): expected a number with an optional K, M or G") }
        if parseBytes(maxMemory).map({ $0 > UInt64(Int.max) }) ?? true {
            throw ValidationError("--max-memory \(maxMemory): expected a number with an optional K, M or G")
        }
    }

    func run() throws {
        var options = SequencedStream.Options()
        options.messageSize = messageSize
        options.window = window
        options.timeout = .seconds(timeout)
        options.reconnectWithin = .seconds(reconnectWithin)
        options.progressEvery = progressEvery
        options.maxReceiveMemory = Int(parseBytes(maxMemory)!)
        let log: (String) -> Void = { FileHandle.standardError.write(Data("stream: \($0)\n".utf8)) }
        let report: (String, UInt64) -> Void = { role, count in
            guard progress else { return }
            log("\(role) \(count) messages, rss_kib \(residentKiB())")
        }
        if server {
            let receiver: StreamReceiver
            do { receiver = try StreamReceiver(bind: bind, port: port, options: options, log: log) } catch { fail(error) }
            receiver.progress = { report("accepted", $0) }
            // Unbuffered: scripts wait for this line, and a pipe would otherwise hold it back.
            FileHandle.standardOutput.write(Data("stream receiver: listening on \(bind ?? "*"):\(receiver.listener?.port ?? port)\n".utf8))
            do {
                let summary = try receiver.run()
                print("stream receiver: accepted \(summary), rss_kib \(residentKiB())")
            } catch {
                fail(error)
            }
            return
        }
        let count = messages ?? max(1, parseBytes(bytes!)! / UInt64(messageSize))
        let sender = StreamSender(host: client!, port: port, messages: count, options: options, log: log)
        sender.progress = { report("completed", $0) }
        do {
            let summary = try sender.run()
            let mib = Double(count) * Double(messageSize) / 1_048_576
            print("stream sender: the receiver accepted exactly what was sent: \(summary); "
                  + String(format: "%.0f MiB in %.1f s, rss_kib %d", mib, summary.seconds, residentKiB()))
        } catch {
            fail(error)
        }
    }
}

/// "10G", "512M", "4K", "123": bytes (powers of 1024).
func parseBytes(_ text: String) -> UInt64? {
    let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    var digits = text.uppercased()
    var scale: UInt64 = 1
    if let last = digits.last, let unit = units[last] { scale = unit; digits.removeLast() }
    guard let n = UInt64(digits), n > 0 else { return nil }
    let (product, overflow) = n.multipliedReportingOverflow(by: scale)
    return overflow ? nil : product
}

/// VmRSS of this process from /proc/self/status, in KiB (0 when unreadable).
func residentKiB() -> Int {
    processStatusField("VmRSS").flatMap { Int($0) } ?? 0
}
