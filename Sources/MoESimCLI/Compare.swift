import ArgumentParser
import Foundation
import MoESim

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every strategy of a config on its trace; print a table and write a CSV (the main job).",
        discussion: "With no arguments: configs/default.yaml, the bundled trace, reports/compare.csv.")

    @OptionGroup var inputs: RunInputArguments

    @Option(help: "Override the config's budget: 16GiB, 40GB, 25%, 96experts.")
    var budget: String?

    @Option(help: "Run every strategy at each of these budgets instead, comma-separated (e.g. 12.5%,25%,50%).")
    var budgets: String?

    @Option(help: "Also write the table as Markdown to this file (for docs).")
    var markdown: String?

    @OptionGroup var prefetch: PrefetchArguments

    @OptionGroup var precision: PrecisionArguments

    @OptionGroup(title: "Serving") var serving: ServingArguments

    @OptionGroup var placement: PlacementArguments

    @OptionGroup var numerics: NumericsArguments

    @Option(help: "Write the CSV here (default: the config's output, else reports/compare.csv).")
    var out: String?

    func run() throws {
        var cfg = try inputs.load()
        if let budget { cfg.budget = try Budget.parse(budget) }
        cfg.prefetch = try prefetch.options(base: cfg.prefetch)
        cfg.precision = try precision.options(base: cfg.precision)
        cfg.serving = try serving.options(base: cfg.serving)
        cfg.placement = try placement.options(base: cfg.placement)
        if numerics.numerics && cfg.policies.contains(where: \.learnsPlacement) {
            let learners = cfg.policies.filter(\.learnsPlacement)
            print("note: --numerics replays the whole trace; \(learners.map(\.rawValue).joined(separator: ", ")) learns on a training part and is left out")
            cfg.policies.removeAll(where: \.learnsPlacement)
            if cfg.policies.isEmpty { throw ValidationError("--numerics: no strategy left to run") }
        }
        if cfg.serving.scheduler != .sequential && numerics.numerics {
            throw ValidationError("--numerics replays batch 1 in the trace's order: it cannot be combined with a serving scheduler")
        }
        try SettingScope.check(cfg.givenSettings + prefetch.given + precision.given + placement.given + serving.given,
                               policies: cfg.policies, schedulers: [cfg.serving.scheduler], gpus: [cfg.hardware.gpus])
        let budgetList = try budgets.map { text in
            try commaList(text, option: "budgets", expected: "a budget") { try Budget.parse($0) }
        } ?? [cfg.budget]
        let path = out ?? cfg.outputPath ?? "reports/compare.csv"
        var files = FileRoles()
        inputs.inputs(cfg, &files)
        files.output(out == nil ? "the config's output" : "--out", path)
        files.output("--markdown", markdown)
        try files.check()
        let cacheless = cfg.policies.filter { !$0.supportsPerLayerScope }
        if cfg.scope != .global && !cacheless.isEmpty {
            print("note: \(cacheless.map(\.rawValue).joined(separator: " and ")) keep no cache: cache_scope \(cfg.scope.rawValue) does not apply to them (their cache_scope column says none)")
        }
        let routing = try RoutingTrace.loadForReplay(cfg.tracePath)
        if cfg.policies.contains(where: \.learnsPlacement) && routing.sequenceCount < RoutingTrace.sequencesToSplit {
            let learners = cfg.policies.filter(\.learnsPlacement).map(\.rawValue).joined(separator: ", ")
            print("note: \(routing.name) has one sequence; \(learners) learns on a training part of the sequences and is left out")
            cfg.policies.removeAll(where: \.learnsPlacement)
            if cfg.policies.isEmpty { throw ValidationError("\(routing.name) has one sequence: no strategy left to run") }
        }
        let plan = StepPlan(routing, weights: numerics.numerics || cfg.policies.contains(where: \.readsGateWeights))
        var results: [ReplayResult] = []
        for b in budgetList {
            var group: [ReplayResult] = []
            for policy in cfg.policies {
                var spec = ReplaySpec(model: cfg.model, hardware: cfg.hardware, policy: policy, scope: cfg.scope,
                                      budget: b, prefetch: cfg.prefetch, precision: cfg.precision, serving: cfg.serving,
                                      runtime: cfg.runtime)
                spec.placement = cfg.placement
                group.append(numerics.numerics
                             ? try NumericsRun.replay(trace: routing, plan: plan, spec: spec, options: numerics.options)
                             : try Replayer.replay(trace: routing, plan: plan, spec: spec))
            }
            print(table(group))
            results += group
        }
        if let markdown {
            try AtomicFileSink.write(markdownTable(results, command: CommandLine.arguments.dropFirst().joined(separator: " ")),
                                     to: markdown)
            print("wrote \(markdown)")
        }
        let groups = results.reduce(into: ColumnGroups()) { $0.formUnion($1.columnGroups) }
        try CSVFile.write(rows: results.map { Metric.row($0, groups) }, header: Metric.header(groups), to: path)
        print("wrote \(path) (\(results.count) rows)")
    }

    /// One Markdown table of every result, with the command that made it.
    func markdownTable(_ results: [ReplayResult], command: String) -> String {
        guard let first = results.first else { return "" }
        var lines = ["Made by `moesim \(command)`: trace `\(first.traceName)` (\(first.tokens) tokens), "
                     + "\(first.spec.model.name) on \(first.spec.hardware.name), \(first.spec.runtime.name) runtime.", "",
                     "| budget | policy | tokens/s | hit rate | TPOT mean | copied | wasted | prefetch useful / late / wasted / cancelled |",
                     "|---|---|---|---|---|---|---|---|"]
        for r in results {
            let p = r.counters.prefetch
            let prefetchCell = r.spec.policy.prefetches ? "\(p.useful) / \(p.late) / \(p.wasted) / \(p.cancelled)" : "–"
            lines.append("| \(formatBytes(r.budgetBytes)) (\(r.budgetExperts) experts) | \(r.spec.policy.rawValue) | "
                         + "\(Human.rate(r.tokensPerSecond)) | \(Human.percent(r.hitRate)) | \(Human.seconds(r.tpotMeanSeconds)) | "
                         + "\(formatBytes(r.counters.bytesH2D)) | \(formatBytes(r.counters.prefetch.bytesWasted)) | \(prefetchCell) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func table(_ results: [ReplayResult]) -> String {
        guard let first = results.first else { return "" }
        var lines = ["\(first.traceName): \(first.tokens) tokens, \(first.spec.model.name) on \(first.spec.hardware.name) (\(first.spec.runtime.name) runtime), "
                     + "budget \(formatBytes(first.budgetBytes)) (\(first.budgetExperts) experts)"]
        let serving = first.serving != nil
        if serving {
            lines.append("served: \(first.spec.serving.scheduler.rawValue) batching up to \(first.spec.serving.batchLimit), arrivals \(first.spec.serving.arrivals.label); latencies per request")
        }
        let header = serving
            ? ["policy", "hit rate", "requests/s", "out tokens/s", "goodput", "mean batch", "TTFT p99", "TPOT p50", "TPOT p99", "e2e p99", "peak KV"]
            : ["policy", "hit rate", "tokens/s", "TTFT", "TPOT mean", "TPOT p99", "copied", "wasted", "stall"]
        let tiers = !serving && results.contains(where: \.hasTiers)
        if let t = first.counters.tiers, tiers {
            lines.append("three tiers: host memory \(formatBytes(t.capacityBytes)) for experts over \(first.spec.hardware.tiers.drive.isEmpty ? "an SSD" : first.spec.hardware.tiers.drive) (docs/tiers.md)")
        }
        if let m = first.multiGPU {
            lines.append("\(m.gpus) GPUs, \(m.map) expert map, interconnect \(String(format: "%.0f", first.spec.hardware.interconnectBytesPerSecond / 1e9)) GB/s (docs/multigpu.md)")
        }
        let gpus = results.contains { $0.multiGPU != nil }
        let gpuCells = { (r: ReplayResult) in
            gpus ? [r.multiGPU.map { String(format: "%.2f", $0.imbalanceMean) } ?? "–", r.multiGPU.map { Human.percent($0.crossShare) } ?? "–"] : []
        }
        var rows = [header + (tiers ? ["host hit", "SSD read", "SSD busy"] : []) + (gpus ? ["imbalance", "cross-GPU"] : [])]
        for r in results {
            if let s = r.serving {
                let sig = { (v: Double?) in v.map { String(format: "%.3g", $0) } ?? "-" }  // requests/s are often small
                rows.append([r.spec.policy.rawValue, Human.percent(r.hitRate), sig(s.requestsPerSecond),
                             Human.rate(s.outputTokensPerSecond), sig(s.goodput),
                             r.meanBatch.map { String(format: "%.2f", $0) } ?? "–", Human.seconds(s.ttft.p99),
                             Human.seconds(s.tpot.p50), Human.seconds(s.tpot.p99), Human.seconds(s.endToEnd.p99),
                             formatBytes(r.peakKVBytes)] + gpuCells(r))
                continue
            }
            rows.append([r.spec.policy.rawValue, Human.percent(r.hitRate), Human.rate(r.tokensPerSecond),
                         Human.seconds(r.ttftSeconds), Human.seconds(r.tpotMeanSeconds), Human.seconds(r.tpotP99Seconds),
                         formatBytes(r.counters.bytesH2D), formatBytes(r.counters.prefetch.bytesWasted),
                         Human.seconds(r.stallSeconds)]
                        + (tiers ? [Human.percent(r.hostHitRate), formatBytes(r.counters.tiers?.bytesRead ?? 0),
                                    Human.percent(r.ssdBusyFraction)] : [])
                        + gpuCells(r))
        }
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        for row in rows {
            lines.append(row.enumerated().map { i, cell in
                i == 0 ? cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: widths[i] - cell.count) + cell
            }.joined(separator: "  "))
        }
        for r in results {
            guard let t = r.trainPart else { continue }
            lines.append("\(r.spec.policy.rawValue): learnt on the first \(Human.percent(t.share)) of the sequences (\(t.tokens) tokens, "
                         + "hit rate \(Human.percent(t.hitRate)) there), measured on the other \(r.tokens) tokens")
        }
        return lines.joined(separator: "\n")
    }
}
