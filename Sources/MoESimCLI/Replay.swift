import ArgumentParser
import Foundation
import MoESim

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay one trace under one strategy and budget; print a summary and append a CSV row.",
        discussion: """
            BUDGET is bytes with a unit (16GiB, 40GB), a share of all experts' bytes (25%), or a number of \
            full-precision experts (96experts). Strategies: \
            \(PolicyKind.allCases.map { "\($0.rawValue) (\($0.summary))" }.joined(separator: "; ")).
            """)

    @Argument(help: "Routing trace (.jsonl or .jsonl.gz, format in docs/trace-format.md).")
    var trace: String

    @Option(help: "Model preset (see `moesim profiles`); default: the preset the trace header names or has the shape of.")
    var model: String?

    @Option(help: "Hardware preset (see `moesim profiles`), or a profile file such as `moesim calibrate` writes (host.yaml).")
    var hardware: String = "a100-80gb-pcie"

    @Option(help: "Runtime preset (ideal, pytorch-eager, cuda-graph, llama.cpp; see `moesim profiles`) or a runtime profile file: its per-layer and per-expert overheads, achieved bandwidth and FLOP/s, pinned or pageable host buffers.")
    var runtime: String = "ideal"

    @Option(help: "Offloading strategy.")
    var policy: PolicyKind = .lru

    @Option(help: "Expert memory budget: 16GiB, 40GB, 25%, 96experts.")
    var budget: String = "25%"

    @Option(help: "One cache for all layers (global), budget/layers per layer (per-layer), or per-layer shares favouring shallow layers (shallow-favoring); strategies with a cache.")
    var scope: CacheScope = .global

    @OptionGroup var prefetch: PrefetchArguments

    @OptionGroup var precision: PrecisionArguments

    @OptionGroup(title: "Serving") var serving: ServingArguments

    @OptionGroup var placement: PlacementArguments

    @Option(help: "With a serving scheduler: write every request's arrival, first token, finish and latencies to this CSV.")
    var requestsCsv: String?

    @OptionGroup var numerics: NumericsArguments

    @Option(help: "With --numerics: write the error of every (token, layer) to this CSV.")
    var numericsCsv: String?

    @OptionGroup var overrides: OverrideOptions

    @Flag(help: "Read and replay the trace in chunks of whole steps: memory stays flat however long the trace (.jsonl or .jsonl.gz; not belady, --numerics or the event views).")
    var stream = false

    @Option(help: "With --stream: tokens per chunk (default 1024; memory grows with it).")
    var chunkTokens: Int = 1024

    @Option(help: "Append the result row to this CSV (created with a header when absent).")
    var out: String?

    @Option(help: "Write the run's first steps as Chrome trace-event JSON (open in Perfetto or chrome://tracing).")
    var timeline: String?

    @Option(help: "Steps the timeline covers (default 20).")
    var timelineSteps: Int = 20

    @Option(help: "Write hits, misses and GPU stall per layer to this CSV.")
    var perLayer: String?

    @Option(help: "Write latency, hits and misses per step (decode token or prefill) to this CSV.")
    var perToken: String?

    func run() throws {
        if numericsCsv != nil && !numerics.numerics { throw ValidationError("--numerics-csv needs --numerics") }
        // Every output is checked before the replay, so that none is written when another cannot be, and none
        // overwrites an input or another output.
        var files = FileRoles()
        files.input("the trace", trace)
        files.input("--model", model); files.input("--hardware", hardware); files.input("--runtime", runtime)
        for (option, path) in [("--out", out), ("--timeline", timeline), ("--per-layer", perLayer), ("--per-token", perToken),
                               ("--numerics-csv", numericsCsv), ("--requests-csv", requestsCsv)] { files.output(option, path) }
        try files.check()
        if scope == .perLayer && !policy.supportsPerLayerScope {
            throw ValidationError("--scope per-layer applies to \(PolicyKind.allCases.filter(\.supportsPerLayerScope).map(\.rawValue).joined(separator: ", ")), not \(policy.rawValue)")
        }
        if stream {
            if numerics.numerics || timeline != nil || perLayer != nil || perToken != nil {
                throw ValidationError("--stream replays without keeping the trace: it cannot be combined with --numerics, --timeline, --per-layer or --per-token")
            }
            if chunkTokens < 1 { throw ValidationError("--chunk-tokens must be at least 1") }
        }
        let loaded = stream ? nil : try RoutingTrace.loadForReplay(trace)
        let header = try loaded?.header ?? RoutingTrace.header(of: trace)
        var modelProfile: ModelProfile
        if let model {
            modelProfile = try RunConfig.profile(named: model, preset: ModelProfile.preset)
        } else {
            let found = try ModelProfile.forTrace(trace, header: header)
            modelProfile = found.profile
            if found.origin != "preset" { print("model: \(found.profile.name) from \(found.origin) (the profile beside the trace)") }
        }
        var hardwareProfile = try RunConfig.profile(named: hardware, preset: HardwareProfile.preset)
        var runtimeProfile = try RunConfig.profile(named: runtime, preset: RuntimeProfile.preset)
        try overrides.apply(model: &modelProfile, hardware: &hardwareProfile, runtime: &runtimeProfile)
        var spec = ReplaySpec(model: modelProfile, hardware: hardwareProfile, policy: policy, scope: scope,
                              budget: try Budget.parse(budget), prefetch: try prefetch.options(base: PrefetchOptions()),
                              precision: try precision.options(base: PrecisionOptions()),
                              serving: try serving.options(base: ServingOptions()), runtime: runtimeProfile)
        spec.placement = try placement.options(base: PlacementOptions())
        try SettingScope.check(prefetch.given + precision.given + placement.given + serving.given,
                               policies: [policy], schedulers: [spec.serving.scheduler], gpus: [spec.hardware.gpus])
        if policy.learnsPlacement && (stream || numerics.numerics || timeline != nil || perLayer != nil || perToken != nil
                                      || requestsCsv != nil) {
            throw ValidationError("\(policy.rawValue) learns on a training part and is measured on the rest: it cannot be combined with --stream, --numerics, --timeline, --per-layer, --per-token or --requests-csv")
        }
        if spec.serving.scheduler != .sequential && policy.learnsPlacement, let routing = loaded {
            let result = try Replayer.replay(trace: routing, plan: StepPlan(routing), spec: spec)
            print(summary(result))
            try appendRow(result)
            return
        }
        if spec.serving.scheduler != .sequential {
            if stream || numerics.numerics || timeline != nil || perLayer != nil || perToken != nil {
                throw ValidationError("a serving scheduler replays the whole trace without event views: it cannot be combined with --stream, --numerics, --timeline, --per-layer or --per-token")
            }
            guard let routing = loaded else { return }
            let served = try Replayer.serve(trace: routing, spec: spec)  // the scheduler forms its own steps
            print(summary(served.result))
            if let requestsCsv {
                try CSVFile.write(rows: served.log.rows(slo: spec.serving.slo), header: ServingLog.header, to: requestsCsv)
                print("wrote \(requestsCsv)")
            }
            try appendRow(served.result)
            return
        }
        if requestsCsv != nil { throw ValidationError("--requests-csv needs a serving scheduler (--scheduler static or continuous)") }
        if stream {
            try report(try Replayer.stream(path: trace, spec: spec, chunkTokens: chunkTokens))
            return
        }
        guard let routing = loaded else { return }
        let plan = StepPlan(routing, weights: numerics.numerics || policy.readsGateWeights)
        let result: ReplayResult
        if numerics.numerics {
            var samples: [[String]] = []
            result = try NumericsRun.replay(trace: routing, plan: plan, spec: spec, options: numerics.options,
                                            perSample: numericsCsv == nil ? nil : { samples.append($0.row) })
            if let numericsCsv {
                try CSVFile.write(rows: samples, header: NumericsSample.header, to: numericsCsv)
                print("wrote \(numericsCsv)")
            }
        } else {
            result = try Replayer.replay(trace: routing, plan: plan, spec: spec)
        }
        print(summary(result))
        if timeline != nil || perLayer != nil || perToken != nil {
            try writeDetails(plan: plan, name: routing.name, spec: spec)
        }
        try appendRow(result)  // last: a row in --out means the whole command succeeded
    }

    /// Prints the summary and appends the row.
    func report(_ result: ReplayResult) throws {
        print(summary(result))
        try appendRow(result)
    }

    func appendRow(_ result: ReplayResult) throws {
        if let out {
            try CSVFile.append(rows: [Metric.row(result)], header: Metric.header(result.columnGroups), to: out)
            print("row appended to \(out)")
        }
    }

    /// Replays again with an event log (the fast replay keeps none) and writes the views asked for.
    func writeDetails(plan: StepPlan, name: String, spec: ReplaySpec) throws {
        var log = EventLog(stepLimit: perLayer == nil && perToken == nil ? max(1, timelineSteps) : .max)
        _ = try Replayer.run(plan: plan, traceName: name, spec: spec, sink: &log)
        if log.truncated && (perLayer != nil || perToken != nil) {
            throw ValidationError("--per-layer and --per-token keep every event of the run in memory, and this trace has more than \(log.limit); replay a shorter trace (moesim trace gen, or cut the file) for them")
        }
        let events = log.drain()
        if let perLayer {
            try CSVFile.write(rows: LayerBreakdown.rows(events, layers: plan.layers, experts: plan.experts),
                              header: LayerBreakdown.header, to: perLayer)
            print("wrote \(perLayer)")
        }
        if let perToken {
            try CSVFile.write(rows: StepBreakdown.rows(events, plan: plan), header: StepBreakdown.header, to: perToken)
            print("wrote \(perToken)")
        }
        if let timeline {
            // Everything before the first layer of step `timelineSteps` (the log may hold the whole run).
            let cutoff = events.first { if case let .layerStart(s, _) = $0.event { s >= timelineSteps } else { false } }?.time
            try Timeline.write(cutoff.map { c in events.filter { $0.time < c } } ?? events, experts: plan.experts, to: timeline)
            print("wrote \(timeline) (first \(timelineSteps) steps)")
        }
    }

    func summary(_ r: ReplayResult) -> String {
        let c = r.counters
        return """
            \(r.traceName): \(r.spec.model.name) on \(r.spec.hardware.name) (\(r.spec.runtime.name) runtime), \(r.spec.policy.rawValue), \
            budget \(formatBytes(r.budgetBytes)) (\(r.budgetExperts) experts)
              tokens \(r.tokens) in \(r.steps) steps; accesses \(c.accesses), hits \(c.hits), misses \(c.misses), \
            hit rate \(Human.percent(r.hitRate))
              simulated \(Human.seconds(r.simSeconds)), \(Human.rate(r.tokensPerSecond)) tokens/s; \
            TTFT \(Human.seconds(r.ttftSeconds)); TPOT mean \(Human.seconds(r.tpotMeanSeconds)), \
            p50 \(Human.seconds(r.tpotP50Seconds)), p99 \(Human.seconds(r.tpotP99Seconds))
              copied \(formatBytes(c.bytesH2D)); GPU stalled \(Human.seconds(r.stallSeconds)); \
            link busy \(Human.percent(r.linkBusyFraction)); peak expert memory \(formatBytes(c.peakExpertBytes)), \
            KV cache \(formatBytes(r.peakKVBytes))
            """ + tierLine(r) + gpusLine(r) + fallbackLine(r) + numericsLine(r) + servingLine(r) + trainLine(r)
    }

    func gpusLine(_ r: ReplayResult) -> String {
        guard let m = r.multiGPU else { return "" }
        return "\n  \(m.gpus) GPUs, \(m.map) expert map (tokens on their \(r.spec.placement.tokenLocation.rawValue)'s GPU): "
            + "load imbalance mean \(String(format: "%.2f", m.imbalanceMean)), p99 \(String(format: "%.2f", m.imbalanceP99)); "
            + "cross-GPU \(Human.percent(m.crossShare)) of routes, all-to-all \(formatBytes(m.allToAllBytes)); "
            + "GPU hit rates \(Human.percent(m.hitRateMin))–\(Human.percent(m.hitRateMax))"
    }

    func tierLine(_ r: ReplayResult) -> String {
        guard let t = r.counters.tiers else { return "" }
        return "\n  host memory \(formatBytes(t.capacityBytes)): hit rate \(Human.percent(r.hostHitRate)) (\(t.hits) hits, "
            + "\(t.misses) misses, \(t.late) late); SSD read \(formatBytes(t.bytesRead)) in \(t.reads) reads "
            + "(\(t.prefetchReads) prefetched), busy \(Human.percent(r.ssdBusyFraction))"
    }

    func trainLine(_ r: ReplayResult) -> String {
        guard let t = r.trainPart else { return "" }
        return "\n  placement learnt on the first \(Human.percent(t.share)) of the sequences (\(t.tokens) tokens: hit rate "
            + "\(Human.percent(t.hitRate)), \(Human.rate(t.tokensPerSecond)) tokens/s there); the figures above are the other \(r.tokens) tokens"
    }

    func servingLine(_ r: ReplayResult) -> String {
        guard let s = r.serving else { return "" }
        let sig = { (v: Double?) in v.map { String(format: "%.3g", $0) } ?? "-" }  // requests/s are often small
        let goodput = s.goodput.map { ", goodput \(sig($0)) requests/s" } ?? ""
        return """

              served \(s.requests) requests (\(r.spec.serving.scheduler.rawValue), \(r.spec.serving.arrivals.label)): \
            \(sig(s.requestsPerSecond)) requests/s, \(Human.rate(s.outputTokensPerSecond)) output tokens/s\(goodput); \
            mean batch \(r.meanBatch.map { String(format: "%.2f", $0) } ?? "–"), \
            \(r.distinctExpertsPerLayer.map { String(format: "%.2f", $0) } ?? "–") distinct experts per layer
              per request: queue mean \(Human.seconds(s.queueMeanSeconds)); TTFT p50 \(Human.seconds(s.ttft.p50)), \
            p99 \(Human.seconds(s.ttft.p99)); TPOT p50 \(Human.seconds(s.tpot.p50)), p99 \(Human.seconds(s.tpot.p99)); \
            end-to-end p99 \(Human.seconds(s.endToEnd.p99))
            """
    }

    func fallbackLine(_ r: ReplayResult) -> String {
        switch r.spec.policy {
        case .mixedPrecision:
            "\n  low precision (int\(r.spec.precision.lowBits)): \(Human.percent(r.lowPrecisionShare)) of gate weight; saved \(formatBytes(r.counters.bytesSaved))"
        case .skip:
            "\n  skipped \(r.counters.skippedExperts) missed experts (gate weight below \(r.spec.precision.skipThreshold))"
        case .mixedSkip:
            "\n  skipped \(r.counters.skippedExperts) missed experts (gate weight below \(r.spec.precision.skipThreshold)); low precision (int\(r.spec.precision.lowBits)): \(Human.percent(r.lowPrecisionShare)) of gate weight; saved \(formatBytes(r.counters.bytesSaved))"
        case .cpuFallback, .staticFrequency:
            "\n  CPU computed \(r.counters.cpuExperts) experts in \(Human.seconds(r.cpuSeconds)); saved \(formatBytes(r.counters.bytesSaved))"
        case .nCpuMoe:
            "\n  experts of the first \(r.spec.placement.cpuLayers(model: r.spec.model, budgetBytes: r.budgetBytes)) layers on the CPU: "
                + "\(r.counters.cpuExperts) computed there in \(Human.seconds(r.cpuSeconds))"
        case .onDemand, .lru, .fifo, .lfu, .arc, .belady, .allResident, .prefetchAll, .pregated, .crossLayerGate,
             .affinity, .moeInfinity, .oraclePrefetch: ""
        }
    }

    func numericsLine(_ r: ReplayResult) -> String {
        guard let n = r.numerics else { return "" }
        return "\n  output error vs fp32 over \(n.samples) (token, layer): mean \(String(format: "%.3g", n.relErrorMean)), "
            + "p99 \(String(format: "%.3g", n.relErrorP99)), cosine min \(String(format: "%.6f", n.cosineMin))"
    }
}
