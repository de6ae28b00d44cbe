// SessionFuzzer: every peer input at session level, over the in-memory twin (VerbsEmbedded).
// The first byte of an input picks the target (bit 0), the rest is its script:
// - 0: a ping-pong server session (`PingPongSessionTarget`): a hostile client's handshake
//   through the server's admission, then, once admitted, its control messages RDMA-written into
//   the server's mailbox, its data writes, sends, reads, heartbeats and hang-ups, served by the
//   server's session code;
// - 1: the numbered stream's receiver (`StreamReceiverTarget`): a hostile sender's hellos,
//   messages, reconnects and hang-ups.
// Whatever the input, the server and the receiver must end with a typed error or a result,
// and leave nothing behind (registered memory, pending requests, the memory budget's charge);
// a trap or a sanitizer report is the bug. HandshakeFuzzer keeps fuzzing the decoders alone,
// at about a hundred times this rate.
//
// Built plainly (`swift build`), it is a regression runner:
//   SessionFuzzer [FILE | DIR]...       every file (directories: every file in them) and each
//                                       file's prefixes and one-byte mutations; exits 0 unless
//                                       something traps
//   SessionFuzzer --write-seeds DIR     writes valid sessions made with PingPong's and the
//                                       stream's own encoders (Seeds.swift)
// Built with `-Xswiftc -DVKVERBS_FUZZING -Xswiftc -sanitize=fuzzer,address` (`make fuzz`), the
// command line goes to libFuzzer's driver instead. The targets reach PingPong's and
// NumberedStream's internals (`@testable import`): SwiftPM's debug builds and mk/fuzz.mk's
// release build (-enable-testing) allow it.
#if canImport(Glibc)
import Glibc
#endif
import FuzzSupport
#if VKVERBS_FUZZING
import CLibFuzzer
#endif

/// Runs per target and the time spent in them, printed when the process ends (each target's
/// own rate). Only the single fuzzing thread touches them.
nonisolated(unsafe) var runs = (pingPong: 0, stream: 0)
nonisolated(unsafe) var nanoseconds = (pingPong: UInt64(0), stream: UInt64(0))

func now() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// One input through the target its first byte picks.
func exercise(_ bytes: [UInt8]) {
    var input = InputReader(bytes)
    let start = now()
    if input.byte() & 1 == 0 {
        PingPongSessionTarget.run(&input)
        runs.pingPong += 1
        nanoseconds.pingPong += now() - start
    } else {
        StreamReceiverTarget.run(&input)
        runs.stream += 1
        nanoseconds.stream += now() - start
    }
}

func printRuns() {
    func rate(_ count: Int, _ ns: UInt64) -> String {
        "\(count) in \(ns / 1_000_000) ms (\(ns == 0 ? 0 : UInt64(count) * 1_000_000_000 / ns)/s of its own time)"
    }
    print("SessionFuzzer: ping-pong sessions: \(rate(runs.pingPong, nanoseconds.pingPong)); "
          + "stream receiver runs: \(rate(runs.stream, nanoseconds.stream))")
}

/// Replays files and, for each, every prefix and the one-byte mutations 0x00, 0xff and +1.
func replay(_ paths: [String]) {
    let files = inputFiles(paths)
    if files.isEmpty { fail("nothing to replay (give files or directories, e.g. Fuzz/corpus/session)") }
    for file in files {
        let bytes = readFile(file)
        exercise(bytes)
        for length in 0..<bytes.count { exercise(Array(bytes.prefix(length))) }
        for index in bytes.indices {
            for value in [0x00, 0xff, bytes[index] &+ 1] as [UInt8] {
                var mutated = bytes
                mutated[index] = value
                exercise(mutated)
            }
        }
    }
    print("SessionFuzzer: \(files.count) files replayed with their prefixes and mutations, none trapped")
    printRuns()
}

func writeSeeds(to directory: String) {
    makeDirectory(directory)
    let seeds = seedInputs()
    for seed in seeds { writeFile(directory + "/" + seed.name, seed.bytes) }
    print("SessionFuzzer: wrote \(seeds.count) seeds to \(directory)")
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--write-seeds" {
    guard arguments.count == 2 else { fail("usage: SessionFuzzer --write-seeds DIR") }
    writeSeeds(to: arguments[1])
    exit(0)
}

#if VKVERBS_FUZZING
/// libFuzzer's usual entry point, also defined because -sanitize=fuzzer links libFuzzer's own
/// main() object, which references it (SwiftPM renames this file's main, see mk/fuzz.mk).
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    exercise(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

atexit { printRuns() }
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
print("SessionFuzzer: main.swift hands over to LLVMFuzzerRunDriver")
let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) }
exit(status)
#else
replay(arguments)
#endif
