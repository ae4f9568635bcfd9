import ArgumentParser
import Foundation
import MoESim

struct PrecisionTable: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "precision",
        abstract: "Tabulate output error against precision and bytes copied: lru at full precision beside mixed-precision at each bit width and threshold.",
        discussion: """
            Replays the config's trace, model, hardware and budget with numerics on (real expert outputs with \
            OpenBLAS against fp32) for lru and for mixed-precision at every --bits x --thresholds, and prints one row \
            each: bytes copied and their share of lru's, the share of gate weight computed in low precision, output \
            error (mean, p99) and the smallest cosine. docs/make-numerics.sh makes docs/generated/precision-*.md with it.
            """)

    @Option(help: "Run configuration (YAML): its trace, model, hardware and budget are used.")
    var config: String = "configs/default.yaml"

    @Option(help: "Low-precision bit widths, comma-separated.")
    var bits: String = "8,4,2"

    @Option(help: "Gate-weight thresholds, comma-separated (a value above 1 sends every miss to low precision).")
    var thresholds: String = "0.2,0.4,2"

    @Option(help: "Weights per quantisation scale.")
    var groupSize: Int = 64

    @Option(help: "Numerics at the profile's hidden and FFN sizes divided by this.")
    var numericsScale: Int = 16

    @Option(help: "Also write the table as Markdown to this file.")
    var markdown: String?

    func run() throws {
        let bitList = try commaList(bits, option: "bits", expected: "8, 4 or 2") { Int($0) }
        let thresholdList = try commaList(thresholds, option: "thresholds", expected: "a number") { Double($0) }
        let cfg = try RunConfig.load(config)
        try FileRoles.check(inputs: cfg.inputFiles.map { ("a file the config reads", $0) }, outputs: [("--markdown", markdown)])
        let trace = try RoutingTrace.loadForReplay(cfg.tracePath)
        let plan = StepPlan(trace)
        let options = NumericsOptions(scale: numericsScale)
        func replay(_ policy: PolicyKind, _ precision: PrecisionOptions) throws -> ReplayResult {
            let spec = ReplaySpec(model: cfg.model, hardware: cfg.hardware, policy: policy, scope: cfg.scope, budget: cfg.budget,
                                  prefetch: cfg.prefetch, precision: precision, runtime: cfg.runtime)
            return try NumericsRun.replay(trace: trace, plan: plan, spec: spec, options: options)
        }
        let baseline = try replay(.lru, PrecisionOptions())
        let m = cfg.model
        // Each row: its label, threshold, the bytes of one expert as copied, and the run.
        var rows: [(String, String, Int, ReplayResult)] = [("fp16 (lru)", "–", m.expertBytes, baseline)]
        for b in bitList {
            for t in thresholdList {
                let precision = PrecisionOptions(threshold: t, lowBits: b, groupSize: groupSize)
                try precision.validate()
                rows.append(("int\(b)", format(t), precision.lowBytes(params: m.expertParams), try replay(.mixedPrecision, precision)))
                FileHandle.standardError.write(Data("int\(b) threshold \(format(t)) done\n".utf8))
            }
        }
        let header = "Made by `moesim \(CommandLine.arguments.dropFirst().joined(separator: " "))`: trace "
            + "`\(trace.name)` (\(trace.tokenCount) tokens), \(m.name) on \(cfg.hardware.name), budget "
            + "\(formatBytes(baseline.budgetBytes)); numerics at 1/\(numericsScale) size (expert \(m.hidden / numericsScale)"
            + "x\(m.expertFFN / numericsScale)), group size \(groupSize)."
        var lines = [header, "",
                     "| low version | threshold | expert bytes | copied | vs lru | low-precision share | rel. error mean | rel. error p99 | cosine min | tokens/s |",
                     "|---|---|---|---|---|---|---|---|---|---|"]
        for (version, threshold, bytesPerExpert, r) in rows {
            let n = r.numerics!
            lines.append("| \(version) | \(threshold) | \(formatBytes(bytesPerExpert)) | \(formatBytes(r.counters.bytesH2D)) | "
                         + String(format: "%.3f", Double(r.counters.bytesH2D) / Double(baseline.counters.bytesH2D)) + " | "
                         + Human.percent(r.lowPrecisionShare) + " | " + String(format: "%.4f", n.relErrorMean) + " | "
                         + String(format: "%.4f", n.relErrorP99) + " | " + String(format: "%.5f", n.cosineMin) + " | "
                         + Human.rate(r.tokensPerSecond) + " |")
        }
        let text = lines.joined(separator: "\n") + "\n"
        print(text)
        if let markdown {
            try AtomicFileSink.write(text, to: markdown)
            print("wrote \(markdown)")
        }
    }

    private func format(_ v: Double) -> String { v == v.rounded() ? String(Int(v)) : "\(v)" }
}

