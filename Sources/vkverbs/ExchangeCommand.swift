import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SelfTest
import Verbs

struct ExchangeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exchange",
        abstract: "Verify send/recv, RDMA write and read between two hosts: one --server, one --client HOST.")

    @Flag(help: "Wait for one client and serve the exchange.") var server = false
    @Option(help: "Connect to the server at HOST.") var client: String?
    @Option(help: "Address to listen on (server).") var bind: String?
    @Option(help: "Port.") var port: UInt16 = 18515
    @Option(help: "Seconds each step may take (the client also retries connecting this long).") var timeout: Int = 60

    func validate() throws {
        if server == (client != nil) { throw ValidationError("give exactly one of --server and --client HOST") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        let options = ExchangeOptions(stepTimeout: .seconds(timeout))
        do {
            let report: ExchangeReport
            if server {
                let listener = try Listener(address: bind, port: port)
                print("exchange: listening on \(bind ?? "*"):\(listener.port)")
                report = try Exchange.serve(listener: listener, options: options)
            } else {
                report = try Exchange.connect(host: client!, port: port, options: options, retryFor: .seconds(timeout))
            }
            printReport(report)
            print("exchange[\(report.role)]: \(report.checks.count - report.failures) passed, \(report.failures) failed")
            if !report.passed { throw ExitCode(1) }
        } catch let error as VerbsError {
            fail(error)
        }
    }
}
