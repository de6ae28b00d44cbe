import Foundation

/// Runs a program to its end with stdout and stderr together; one that is still running after
/// `timeout` seconds is terminated (`timedOut` is then true), so no test waits forever on a child.
public func runProcess(_ executable: URL, _ arguments: [String], timeout: TimeInterval = 60)
    throws -> (status: Int32, output: String, seconds: Double, timedOut: Bool) {
    let p = Process()
    p.executableURL = executable
    p.arguments = arguments
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    let start = Date()
    try p.run()
    let watchdog = DispatchWorkItem { if p.isRunning { p.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    watchdog.cancel()
    let seconds = Date().timeIntervalSince(start)
    return (p.terminationStatus, String(decoding: data, as: UTF8.self), seconds,
            p.terminationReason == .uncaughtSignal && seconds >= timeout)
}
