import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SelfTest
import Verbs

struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Connect to this host through rdmacm and verify send/recv, RDMA write and RDMA read.")

    @OptionGroup var rdma: RDMAPortOptions
    @Option(help: "Seconds each step may take.") var timeout: Int = 60

    func run() throws {
        let local = rdma.localPort()
        let address = local.address
        print("selftest: device \(local.context.name) port \(local.port.number) (\(local.port.state.rawValue), MTU \(local.port.activeMTU?.bytes ?? 0)), address \(address)")
        let options = ExchangeOptions(stepTimeout: .seconds(timeout))
        do {
            let (server, client) = try Loopback.run(address: address, options: options)
            printReport(server)
            printReport(client)
            let failed = server.failures + client.failures
            print("selftest: \(server.checks.count + client.checks.count - failed) passed, \(failed) failed")
            if failed > 0 { throw ExitCode(1) }
        } catch let error as VerbsError {
            fail(error)
        }
    }
}

func printReport(_ report: ExchangeReport) {
    print("[\(report.role)] device \(report.device), peer \(report.peer)")
    for check in report.checks { print("[\(report.role)]   \(check)") }
}
