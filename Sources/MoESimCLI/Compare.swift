import ArgumentParser
import Foundation
import MoESim

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every strategy of a config on its trace; print a table and write a CSV (the main job).",
        discussion: "With no arguments: configs/default.yaml, the bundled trace, reports/compare.csv.")

    @Option(help: "Run configuration (YAML, see docs/config.md).")
    var config: String = "configs/default.yaml"

    @Option(help: "Override the config's trace.")
    var trace: String?

    @Option(help: "Override the config's budget: 16GiB, 40GB, 25%, 96experts.")
    var budget: String?

    @OptionGroup var overrides: OverrideOptions

    @Option(help: "Write the CSV here (default: the config's output, else reports/compare.csv).")
    var out: String?

    func run() throws {
        guard FileManager.default.fileExists(atPath: config) else {
            throw ValidationError("config file '\(config)' not found; run from the repository root or pass --config FILE")
        }
        var cfg = try RunConfig.load(config)
        if let trace { cfg.tracePath = trace }
        if let budget { cfg.budget = try Budget.parse(budget) }
        try overrides.apply(model: &cfg.model, hardware: &cfg.hardware)
        let routing = try RoutingTrace.load(cfg.tracePath)
        let plan = StepPlan(routing)
        var results: [ReplayResult] = []
        for policy in cfg.policies {
            let spec = ReplaySpec(model: cfg.model, hardware: cfg.hardware, policy: policy, scope: cfg.scope,
                                  budget: cfg.budget)
            results.append(try Replayer.run(plan: plan, traceName: routing.name, spec: spec))
        }
        print(table(results))
        let path = out ?? cfg.outputPath ?? "reports/compare.csv"
        try CSVFile.write(rows: results.map(Metric.row), header: Metric.header, to: path)
        print("wrote \(path) (\(results.count) rows)")
    }

    func table(_ results: [ReplayResult]) -> String {
        guard let first = results.first else { return "" }
        var lines = ["\(first.traceName): \(first.tokens) tokens, \(first.spec.model.name) on \(first.spec.hardware.name), "
                     + "budget \(formatBytes(first.budgetBytes)) (\(first.budgetExperts) experts)"]
        let header = ["policy", "hit rate", "tokens/s", "TTFT", "TPOT mean", "TPOT p99", "copied", "stall"]
        var rows = [header]
        for r in results {
            rows.append([r.spec.policy.rawValue, Human.percent(r.hitRate), Human.rate(r.tokensPerSecond),
                         Human.seconds(r.ttftSeconds), Human.seconds(r.tpotMeanSeconds), Human.seconds(r.tpotP99Seconds),
                         formatBytes(r.counters.bytesH2D), Human.seconds(r.stallSeconds)])
        }
        let widths = header.indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        for row in rows {
            lines.append(row.enumerated().map { i, cell in
                i == 0 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: widths[i] - cell.count) + cell
            }.joined(separator: "  "))
        }
        return lines.joined(separator: "\n")
    }
}
