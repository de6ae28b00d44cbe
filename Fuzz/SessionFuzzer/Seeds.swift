// Seed inputs for SessionFuzzer, made with PingPong's and the numbered stream's own encoders
// (Handshake.request, StepRequest.words, StreamWire.sampleHello), so the seeds follow the wire
// formats when they change: `make fuzz-seeds` writes them to Fuzz/corpus/session. Each is a
// whole, valid session or stream (which the fuzzer then mutates), or one known hostile case.
@testable import NumberedStream
@testable import PingPong
import Verbs

/// An input for one target, built action by action (the codes are `PingPongAction`'s and
/// `StreamAction`'s).
struct ScriptBuilder {
    var bytes: [UInt8]

    init(target: UInt8) { bytes = [target] }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    mutating func action(_ action: PingPongAction, _ operands: (inout ScriptBuilder) -> Void = { _ in }) {
        bytes.append(action.rawValue)
        operands(&self)
    }

    mutating func control(_ kind: UInt8, _ a: UInt64 = 0, _ b: UInt64 = 0) {
        action(.control) { $0.bytes.append(kind); $0.append(a); $0.append(b) }
    }

    mutating func stream(_ action: StreamAction, _ operands: (inout ScriptBuilder) -> Void = { _ in }) {
        bytes.append(action.rawValue)
        operands(&self)
    }

    /// A data message numbered the sender's next plus `delta`, with the right checksum and length.
    mutating func message(delta: Int8 = 0, length: UInt16, byte: UInt8 = 0x5a, kind: UInt8 = 0) {
        stream(.message) {
            $0.bytes.append(UInt8(bitPattern: delta))
            $0.append(length)
            $0.bytes.append(kind)
            $0.append(UInt64(0))
            $0.bytes.append(3)
            $0.bytes.append(byte)
        }
    }

    mutating func hello(messageSize: Int = 64, messages: UInt64 = 4) {
        let hello = StreamWire.sampleHello(messageSize: messageSize, messages: messages)
        bytes.append(UInt8(hello.count))
        bytes += hello
    }
}

func seedInputs() -> [(name: String, bytes: [UInt8])] {
    var seeds: [(name: String, bytes: [UInt8])] = []
    let placeholder = RemoteBuffer(address: 0x1000, length: 128, rkey: 1)
    let size = 64, total = 3

    /// A ping-pong input: flags, the request of `change`d defaults, then `script`.
    func pingPong(_ name: String, flags: UInt8 = 3, request: [UInt8]? = nil, _ change: (inout PingPongConfiguration) -> Void,
                  _ script: (inout ScriptBuilder) -> Void) {
        var config = PingPongConfiguration()
        config.sizes = [size]
        change(&config)
        let bytes = request ?? Handshake.request(config, buffer: placeholder, mailbox: placeholder, time: 1_800_000_000)
        var b = ScriptBuilder(target: 0)
        b.bytes += [flags, UInt8(bytes.count)] + bytes
        script(&b)
        seeds.append(("pingpong-" + name, b.bytes))
    }
    let start = StepRequest.words(size: size, total: total, inline: 0)
    for operation in RDMAOperation.allCases {
        for measurement in MeasurementKind.allCases {
            pingPong("\(operation.rawValue)-\(measurement.rawValue)", { $0.operation = operation; $0.measurement = measurement }) { b in
                b.action(.postReceives) { $0.bytes.append(7) }
                b.control(UInt8(ControlKind.start.rawValue), start.a, start.b)
                for i in 0..<total {
                    switch operation {
                    case .write: b.action(.write) { $0.append(UInt16(0)); $0.append(UInt16(size)); $0.bytes.append(tag(i)) }
                    case .writeImm: b.action(.writeImmediate) { $0.append(UInt16(0)); $0.append(UInt16(size)); $0.append(UInt32(i)) }
                    case .send: b.action(.send) { $0.append(UInt16(size)); $0.bytes.append(tag(i)) }
                    case .read: b.action(.read) { $0.append(UInt16(0)); $0.append(UInt16(size)) }
                    }
                }
                b.control(UInt8(ControlKind.done.rawValue))
                b.control(UInt8(ControlKind.bye.rawValue))
            }
        }
    }
    pingPong("signed", flags: 3 | 4 | 8, { $0.operation = .write }) { b in
        b.control(UInt8(ControlKind.start.rawValue), start.a, start.b)
        b.action(.heartbeat) { $0.append(UInt64(1)) }
        b.control(UInt8(ControlKind.bye.rawValue))
    }
    pingPong("over-budget", { $0.sizes = [1 << 20] }) { b in b.control(UInt8(ControlKind.bye.rawValue)) }
    pingPong("start-huge-words", { $0.operation = .send }) { b in
        b.control(UInt8(ControlKind.start.rawValue), .max, .max)
    }
    pingPong("start-inline-huge", { $0.operation = .write }) { b in
        b.control(UInt8(ControlKind.start.rawValue), UInt64(size) | UInt64(UInt32.max) << 32, 1)
    }
    pingPong("unknown-kind", { _ in }) { b in b.control(0xee, 1, 2) }
    pingPong("torn-control", { _ in }) { b in
        b.action(.mailboxBytes) { $0.bytes += [0, 8, 1] }
        b.action(.rawControl) { $0.bytes += [UInt8](repeating: 0xff, count: 32) }
        b.action(.writeAnywhere) { $0.append(UInt64(0x1000)); $0.append(UInt32(7)); $0.append(UInt16(16)) }
    }
    pingPong("done-out-of-turn", { _ in }) { b in b.control(UInt8(ControlKind.done.rawValue)) }
    pingPong("bad-magic", request: [UInt8](repeating: 0x41, count: 56), { _ in }) { b in b.action(.idle) }

    /// A stream input: window byte 3 (a window of 4), then `script`.
    func stream(_ name: String, _ script: (inout ScriptBuilder) -> Void) {
        var b = ScriptBuilder(target: 1)
        b.bytes.append(3)
        script(&b)
        seeds.append(("stream-" + name, b.bytes))
    }
    stream("whole") { b in
        b.hello()
        b.stream(.postReceive)
        for i in 0..<4 { b.message(length: UInt16(16 * i + 1)) }
        b.message(length: 0, kind: 1)
    }
    stream("reconnect") { b in
        b.hello()
        for _ in 0..<2 { b.message(length: 64) }
        b.stream(.reconnect)
        b.hello()
        b.stream(.postReceive)
        for _ in 0..<2 { b.message(length: 64) }
        b.message(length: 0, kind: 1)
    }
    stream("duplicate") { b in
        b.hello()
        b.message(length: 8)
        b.message(delta: -1, length: 8)
    }
    stream("gap") { b in
        b.hello()
        b.message(delta: 2, length: 8)
    }
    stream("oversized") { b in
        b.hello()
        b.message(length: 1000)
    }
    stream("end-early") { b in
        b.hello()
        b.message(length: 8)
        b.message(delta: 3, length: 0, kind: 1)
    }
    stream("raw-and-empty") { b in
        b.hello()
        b.stream(.empty)
        b.stream(.raw) { $0.bytes += [4] + [1, 2, 3, 4] }
    }
    stream("flushed-then-back") { b in
        b.hello()
        b.message(length: 8)
        b.stream(.flush)
        b.stream(.reconnect)
        b.hello()
        b.message(length: 8)
    }
    stream("over-budget") { b in b.hello(messageSize: 1 << 20) }
    return seeds
}
