// HandshakeFuzzer: every decoder of bytes a peer sends, fed hostile bytes: the ping-pong handshake's
// `HandshakeWire.checkRequest` and `HandshakeWire.checkAnswer`, the ping-pong server's control-message
// decoder `ControlWire.checkStep` (a mailbox's 32 bytes, then the step request's range checks), and
// the numbered stream's hello, answer and message run into a receiver (`StreamWire`).
// Every input goes through all of them (no dispatch byte, so the committed handshake seeds keep their
// meaning); each must decode or throw a typed error (`VerbsError`, `PingPongError`); a trap (or a
// sanitizer report) is the bug.
//
// Built plainly (`swift build`), it is a regression runner:
//   HandshakeFuzzer [FILE | DIR]...       every file (directories: every file in them, not recursive)
//                                         through the three decoders, plus each file's prefixes and
//                                         one-byte mutations; exits 0 unless something traps
//   HandshakeFuzzer --write-seeds DIR     writes valid handshakes and control messages made by PingPong's own encoders
//                                         (only when built with -DVKVERBS_FUZZ_SEEDS: Seeds.swift)
// Built with `-Xswiftc -DVKVERBS_FUZZING -Xswiftc -sanitize=fuzzer,address` (`make fuzz`), the
// command line goes to libFuzzer's driver instead (corpus directories, -max_total_time=..., ...).
#if canImport(Glibc)
import Glibc
#endif
import FuzzSupport
import NumberedStream
import PingPong
import Verbs
#if VKVERBS_FUZZING
import CLibFuzzer
#endif

/// Counts the bytes of every error message, so that formatting the message is exercised too and
/// not optimised away. Only the single fuzzing thread touches it.
nonisolated(unsafe) var messageBytes = 0

/// One input through every decoder; says which accepted it.
func exercise(_ bytes: [UInt8]) -> (request: Bool, answer: Bool, step: Bool, stream: Bool) {
    var accepted = (request: false, answer: false, step: false, stream: false)
    do throws(VerbsError) {
        try HandshakeWire.checkRequest(bytes)
        accepted.request = true
    } catch {
        messageBytes &+= error.description.utf8.count
    }
    do throws(VerbsError) {
        try HandshakeWire.checkAnswer(bytes)
        accepted.answer = true
    } catch {
        messageBytes &+= error.description.utf8.count
    }
    do throws(PingPongError) {
        try ControlWire.checkStep(bytes)
        accepted.step = true
    } catch {
        messageBytes &+= error.description.utf8.count
    }
    // The numbered stream: a sender's hello and a receiver's answer (connection private data),
    // and the bytes as a run of messages into a receiver.
    do throws(SequencedStream.StreamError) {
        _ = try StreamWire.decodeHello(bytes, maxMessageSize: SequencedStream.maxMessageSize)
        accepted.stream = true
    } catch {
        messageBytes &+= error.description.utf8.count
    }
    do throws(SequencedStream.StreamError) {
        _ = try StreamWire.decodeAnswer(bytes, messages: 1 << 20)
    } catch {
        messageBytes &+= error.description.utf8.count
    }
    do throws(SequencedStream.StreamError) {
        if try StreamWire.checkMessages(bytes) { accepted.stream = true }
    } catch {
        messageBytes &+= error.description.utf8.count
    }
    return accepted
}

// MARK: modes

/// Replays files and, for each, every prefix and every one-byte mutation (0x00, 0xff, +1).
func replay(_ paths: [String]) {
    let files = inputFiles(paths)
    if files.isEmpty { fail("nothing to replay (give files or directories, e.g. Fuzz/corpus)") }
    var runs = 0, requests = 0, answers = 0, steps = 0, streams = 0
    for file in files {
        let bytes = readFile(file)
        let verdict = exercise(bytes)
        runs += 1
        if verdict.request { requests += 1 }
        if verdict.answer { answers += 1 }
        if verdict.step { steps += 1 }
        if verdict.stream { streams += 1 }
        for length in 0..<bytes.count {
            _ = exercise(Array(bytes.prefix(length)))
            runs += 1
        }
        for index in bytes.indices {
            for value in [0x00, 0xff, bytes[index] &+ 1] as [UInt8] {
                var mutated = bytes
                mutated[index] = value
                _ = exercise(mutated)
                runs += 1
            }
        }
    }
    print("HandshakeFuzzer: \(files.count) files, \(runs) inputs, none trapped; "
          + "as given, \(requests) decode as requests, \(answers) as answers, \(steps) as control messages and \(streams) as stream hellos or runs")
}

func writeSeeds(to directory: String) {
    guard let seeds = seedInputs() else {
        fail("--write-seeds needs a build with -DVKVERBS_FUZZ_SEEDS (make fuzz-seeds); see Seeds.swift")
    }
    makeDirectory(directory)
    for seed in seeds {
        writeFile(directory + "/" + seed.name, seed.bytes)
    }
    print("HandshakeFuzzer: wrote \(seeds.count) seeds to \(directory)")
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--write-seeds" {
    guard arguments.count == 2 else { fail("usage: HandshakeFuzzer --write-seeds DIR") }
    writeSeeds(to: arguments[1])
    exit(0)
}

#if VKVERBS_FUZZING
/// libFuzzer's usual entry point, also defined because -sanitize=fuzzer links libFuzzer's own
/// main() object, which references it (SwiftPM renames this file's main, see mk/fuzz.mk).
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    _ = exercise(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
print("HandshakeFuzzer: main.swift hands over to LLVMFuzzerRunDriver")
let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) }
exit(status)
#else
replay(arguments)
#endif
