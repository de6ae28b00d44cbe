// Seed inputs for the fuzzer, made by PingPong's own encoders (Handshake.request / .answer,
// ControlMessage, StepRequest.words), so the seeds follow the wire format when it changes:
// `make fuzz-seeds` rebuilds with -DVKVERBS_FUZZ_SEEDS and runs
// `HandshakeFuzzer --write-seeds Fuzz/corpus`.
// Those encoders are internal, hence @testable import (allowed because SwiftPM's debug builds use
// -enable-testing). The file only compiles under VKVERBS_FUZZ_SEEDS, so a change of the encoders'
// signatures breaks `make fuzz-seeds` (update the calls below), never the normal build.
#if VKVERBS_FUZZ_SEEDS
@testable import PingPong
import NumberedStream
import Verbs

func seedInputs() -> [(name: String, bytes: [UInt8])]? {
    let buffer = RemoteBuffer(address: 0x7f3a_c000_1000, length: 1 << 20, rkey: 0x0001_2345)
    let mailbox = RemoteBuffer(address: 0x7f3a_c800_0000, length: 64, rkey: 0x0006_789a)
    let secret = try! SharedSecret(Array("fuzz-seed-shared-secret-0123456789".utf8))
    let time: UInt32 = 1_800_000_000
    var seeds: [(name: String, bytes: [UInt8])] = []

    func request(_ name: String, secret: SharedSecret? = nil, _ change: (inout PingPongConfiguration) -> Void = { _ in }) {
        var config = PingPongConfiguration()
        change(&config)
        seeds.append(("request-" + name, Handshake.request(config, buffer: buffer, mailbox: mailbox, secret: secret, time: time)))
    }
    for operation in RDMAOperation.allCases {
        for measurement in MeasurementKind.allCases {
            request("\(operation.rawValue)-\(measurement.rawValue)") {
                $0.operation = operation
                $0.measurement = measurement
                $0.sizes = [4096]
            }
        }
    }
    for memory in MemoryKind.allCases where memory != .host {
        request("memory-\(memory.rawValue)") { $0.memory = memory }
    }
    request("size-1") { $0.sizes = [1] }
    request("size-1GiB") { $0.sizes = [1 << 30] }
    request("sweep") { $0.sizes = PingPongConfiguration.sweep }
    request("signed", secret: secret)
    request("signed-read-bandwidth", secret: secret) {
        $0.operation = .read
        $0.measurement = .bandwidth
    }

    let signedRequest = seeds.last!.bytes
    seeds.append(("answer", Handshake.answer(buffer: buffer, mailbox: mailbox, request: signedRequest, secret: nil)))
    let signedAnswer = Handshake.answer(buffer: buffer, mailbox: mailbox, request: signedRequest, secret: secret)
    seeds.append(("answer-signed", signedAnswer))
    // The IB CM pads private data: a REP carries 196 bytes, so the client sees the answer padded.
    seeds.append(("answer-signed-cm-padded", signedAnswer + [UInt8](repeating: 0, count: max(0, 196 - signedAnswer.count))))
    let empty = RemoteBuffer(address: 0, length: 0, rkey: 0)
    seeds.append(("answer-empty-buffers", Handshake.answer(buffer: empty, mailbox: empty, request: signedRequest, secret: nil)))

    // Control messages as a client writes them into the server's mailbox (ControlWire.checkStep).
    func control(_ name: String, _ kind: ControlKind, size: Int = 0, total: Int = 0, inline: Int = 0) {
        let words = StepRequest.words(size: size, total: total, inline: inline)
        seeds.append(("control-" + name, ControlMessage(sequence: 1, kind: kind, a: words.a, b: words.b).bytes))
    }
    control("start-latency", .start, size: 64, total: 1100, inline: PingPongConfiguration.defaultLatencyInline)
    control("start-bandwidth", .start, size: 1 << 20, total: 1100)
    control("start-one-byte", .start, size: 1, total: 1)
    control("bye", .bye)
    // Hostile ones the decoder must refuse without trapping.
    seeds.append(("control-start-total-max", ControlMessage(sequence: 1, kind: .start, a: 64, b: .max).bytes))
    control("start-size-zero", .start, size: 0, total: 10)
    control("done-out-of-turn", .done, size: 64, total: 10)

    // The numbered stream: a hello, an answer, and runs of messages into a receiver.
    seeds.append(("stream-hello", StreamWire.sampleHello()))
    seeds.append(("stream-answer", StreamWire.sampleAnswer()))
    seeds.append(("stream-run", StreamWire.sampleRun()))
    seeds.append(("stream-run-one", StreamWire.sampleRun(messages: 1, messageSize: 8)))
    return seeds
}
#else
func seedInputs() -> [(name: String, bytes: [UInt8])]? { nil }
#endif
