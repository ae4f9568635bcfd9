import ArgumentParser
import MoESim

@main
struct MoESimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moesim",
        abstract: "Simulate Mixture-of-Experts expert offloading on recorded routing traces.",
        discussion: """
            Replays which experts each token was routed to on a model of GPU memory, the host-to-GPU link and \
            GPU compute, under one offloading strategy and memory budget, and reports latency, throughput, \
            hit rate and bytes moved. Start with `moesim compare` (every strategy on the bundled trace).
            """,
        version: "0.1.0",
        subcommands: [Compare.self, Replay.self, PlanCommand.self, Sweep.self, Merge.self, Plot.self, Report.self, TraceCommand.self, Profiles.self, Calibrate.self, PrecisionTable.self, Bench.self]
    )
}

extension PolicyKind: ExpressibleByArgument {}
extension CacheScope: ExpressibleByArgument {}
extension CacheEviction: ExpressibleByArgument {}
extension PrefetchAdmission: ExpressibleByArgument {}
extension LowPrecisionHit: ExpressibleByArgument {}
