import ArgumentParser
import Foundation
import MoESim
#if canImport(Glibc)
import Glibc
#endif

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure replay speed on deterministic generated traces; print medians (and write them as CSV).",
        discussion: """
            Cases: each strategy on a 32-layer x 256-expert top-8 decode trace of about 10 million accesses, and on a \
            Mixtral-shaped trace. Inputs are generated from fixed seeds, so every run measures the same work. \
            Replay time covers planning-free replay only (the trace is compiled into steps once, outside the timer); \
            Belady's future index is built inside the timer; the plan-256x32-top8 case times building that plan \
            beside lru's replay of it. Runs are interleaved (each round replays every \
            strategy once), and each prefetching strategy also reports its replay time relative to LRU's in the \
            same round; a filter that picks a prefetching strategy runs LRU too. With --against OLD, each round \
            also runs OLD's bench on the same cases (one run, in a child process) right after this build's, and \
            the ratio of the two replay speeds is reported per case (median over rounds): an A/B in one invocation.
            """)

    @Option(help: "Timed runs per case; the median is reported.")
    var runs: Int = 5

    @Option(help: "Accesses in the large trace (tokens = accesses / (32 x 8)).")
    var accesses: Int = 10_000_000

    @Option(help: "Also write rows case,metric,median,min,max,unit to this CSV.")
    var csv: String?

    @Option(help: "Only cases whose name contains this text.")
    var filter: String?

    @Option(help: "Another moesim binary (e.g. the previous build) to run interleaved, round by round, on the same replay cases; use with a --filter that names replay cases (e.g. lru-mixtral).")
    var against: String?

    func validate() throws {
        if runs < 1 { throw ValidationError("--runs must be at least 1") }
        if accesses < 256 { throw ValidationError("--accesses must be at least 256") }
    }

    struct Row { let name: String; let metric: String; let values: [Double]; let unit: String }

    func run() throws {
        try FileRoles.check(inputs: [("--against", against)], outputs: [("--csv", csv)])
        var rows = try streamingMemoryCases()
        var large = try ModelProfile.preset("qwen3-30b-a3b")
        large.name = "bench-32x256"; large.layers = 32; large.experts = 256
        let mixtral = try ModelProfile.preset("mixtral-8x7b")
        let hardware = try HardwareProfile.preset("a100-80gb-pcie")
        let workloads: [(label: String, model: ModelProfile, tokens: Int, budget: Budget)] = [
            ("256x32-top8", large, accesses / (32 * 8), .share(0.25)),
            ("mixtral", mixtral, accesses / (32 * 2), .share(0.25)),
        ]
        var largeTrace: RoutingTrace?
        var largePlan: StepPlan?
        for w in workloads {
            var spec = SyntheticTraceSpec(tokens: w.tokens, seed: 42)
            spec.sequences = 8
            spec.prefillTokens = 0
            let trace = try SyntheticTraceGenerator(model: w.model, spec: spec).makeTrace(name: "bench-\(w.label)")
            let plan = StepPlan(trace)
            if largeTrace == nil { largeTrace = trace; largePlan = plan }
            rows += try replayCases(plan, traceName: trace.name, label: w.label, model: w.model, hardware: hardware,
                                    budget: w.budget)
        }
        if let plan = largePlan, let trace = largeTrace {
            // Three tiers (docs/tiers.md): host memory for half the experts, a PCIe 4.0 NVMe drive below it.
            var tiered = hardware
            tiered.name = "a100-80gb-pcie-nvme"
            tiered.tiers.hostExpertBytes = Double(large.totalExpertBytes / 2)
            try tiered.tiers.useDrive("pcie4-nvme")
            rows += try replayCases(plan, traceName: trace.name, label: "256x32-top8-tiers", model: large,
                                    hardware: tiered, budget: .share(0.25), among: [.lru, .pregated])
            // Eight GPUs (docs/multigpu.md): round-robin over NVLink 4, a quarter of the experts per GPU.
            var eight = hardware
            eight.name = "a100-80gb-pcie-x8"
            eight.gpus = 8
            eight.interconnectBytesPerSecond = 450e9
            rows += try replayCases(plan, traceName: trace.name, label: "256x32-top8-8gpus", model: large,
                                    hardware: eight, budget: .share(0.25), among: [.lru])
        }
        if let plan = largePlan, let trace = largeTrace {
            rows += try planCases(trace, plan: plan, model: large, hardware: hardware)
        }
        rows += try servingCases(large, hardware: hardware)
        rows += try kernelCases()
        rows += try numericsCases(mixtral, hardware: hardware)
        if let trace = largeTrace { rows += try readingCases(trace) }
        if let trace = largeTrace { rows += try sweepCases(trace, model: large, hardware: hardware) }
        printMemory(largeTrace)
        if let csv {
            let table = rows.map { r -> [String] in
                let s = r.values.sorted()
                return [r.name, r.metric, "\(median(s))", "\(s.first!)", "\(s.last!)", r.unit]
            }
            try CSVFile.write(rows: table, header: ["case", "metric", "median", "min", "max", "unit"], to: csv)
            print("wrote \(csv)")
        }
    }

    /// Continuous batching at batch 16 (all requests waiting at 0, LRU): accesses/s, an access being one (step,
    /// layer, expert) of a step's union; the step plans are compiled as the scheduler forms the steps, inside the
    /// timed region. 64 requests of the 256x32 shape, as many tokens as the replay cases.
    func servingCases(_ model: ModelProfile, hardware: HardwareProfile) throws -> [Row] {
        let name = "lru-256x32-continuous16"
        guard filter.map({ name.contains($0) }) ?? true else { return [] }
        var traceSpec = SyntheticTraceSpec(tokens: accesses / (32 * 8), seed: 43)
        traceSpec.sequences = 64
        traceSpec.prefillTokens = 0
        let trace = try SyntheticTraceGenerator(model: model, spec: traceSpec).makeTrace(name: "bench-serving")
        let plan = StepPlan(trace)
        var spec = ReplaySpec(model: model, hardware: hardware, policy: .lru, budget: .share(0.25))
        spec.serving.scheduler = .continuous
        spec.serving.maxSeqs = 16
        var rates: [Double] = [], otherRates: [Double] = [], result: ReplayResult?
        for _ in 0..<runs {
            let elapsed = try ContinuousClock().measure { result = try Replayer.serve(trace: trace, plan: plan, spec: spec).result }
            rates.append(Double(result!.counters.accesses) / elapsed.seconds)
            if let against, let other = try otherBuildRates(against).first(where: { $0.0 == name }) { otherRates.append(other.1) }
        }
        let row = Row(name: name, metric: "replay_accesses_per_s", values: rates, unit: "accesses/s")
        var rows = [row]
        var note = String(format: "%d accesses in %d steps, mean batch %.1f, %.1f distinct experts per layer, hit rate %.3f",
                          result!.counters.accesses, result!.steps, result!.meanBatch ?? 0,
                          result!.distinctExpertsPerLayer ?? 0, result!.hitRate ?? 0)
        if let (ratios, text) = comparison(row, otherRates) { rows.append(ratios); note += text }
        printRow(row, note: note)
        return rows
    }

    /// This build's rates over the other build's (`--against`), round by round: a row and a note; nil when the
    /// other build did not measure the case in every round.
    func comparison(_ rate: Row, _ other: [Double]?) -> (Row, String)? {
        guard let against, let other, other.count == rate.values.count, !other.isEmpty else { return nil }
        let ratios = zip(rate.values, other).map { $0 / $1 }
        let text = String(format: "; vs %@: median %.3f (%.3f-%.3f) over %d interleaved rounds",
                          FilePath.name(of: against), median(ratios.sorted()), ratios.min()!, ratios.max()!,
                          ratios.count)
        return (Row(name: rate.name, metric: "speed_vs_against", values: ratios, unit: "ratio"), text)
    }

    /// Accesses/s of each strategy on one plan. Runs are interleaved (round r replays every strategy once) so
    /// that this VM's drift hits all strategies alike; each prefetching strategy also gets the median over rounds
    /// of its replay time divided by the same round's LRU time, the figure the 2x prefetch target is about.
    func replayCases(_ plan: StepPlan, traceName: String, label: String, model: ModelProfile,
                     hardware: HardwareProfile, budget: Budget, among: [PolicyKind] = PolicyKind.allCases) throws -> [Row] {
        var policies = among.filter { policy in
            filter.map { "\(policy.rawValue)-\(label)".contains($0) } ?? true
        }
        // A prefetching case is measured beside LRU, its baseline.
        if policies.contains(where: \.prefetches) && !policies.contains(.lru) { policies.insert(.lru, at: 0) }
        guard !policies.isEmpty else { return [] }
        var seconds = [PolicyKind: [Double]](), hitRate = [PolicyKind: Double](), issued = [PolicyKind: Int]()
        var otherRates = [String: [Double]]()
        for _ in 0..<runs {
            for policy in policies {
                let spec = ReplaySpec(model: model, hardware: hardware, policy: policy, budget: budget)
                var result: ReplayResult?
                let elapsed = try ContinuousClock().measure {
                    result = try Replayer.run(plan: plan, traceName: traceName, spec: spec)
                }
                seconds[policy, default: []].append(elapsed.seconds)
                hitRate[policy] = result?.hitRate ?? 0
                issued[policy] = result?.counters.prefetch.issued ?? 0
            }
            if let against {
                for (name, rate) in try otherBuildRates(against) { otherRates[name, default: []].append(rate) }
            }
        }
        var rows: [Row] = []
        for policy in policies {
            let name = "\(policy.rawValue)-\(label)"
            let rate = Row(name: name, metric: "replay_accesses_per_s",
                           values: seconds[policy]!.map { Double(plan.accesses) / $0 }, unit: "accesses/s")
            rows.append(rate)
            var note = "\(plan.accesses) accesses, hit rate \(String(format: "%.3f", hitRate[policy]!))"
            if policy.prefetches, let lru = seconds[.lru] {
                let ratios = zip(seconds[policy]!, lru).map { $0 / $1 }
                rows.append(Row(name: name, metric: "time_vs_lru", values: ratios, unit: "ratio"))
                note += String(format: "; time / lru: median %.2f (%.2f-%.2f); %.2f prefetches issued per access",
                               median(ratios.sorted()), ratios.min()!, ratios.max()!,
                               Double(issued[policy]!) / Double(plan.accesses))
            }
            if let (ratios, text) = comparison(rate, otherRates[name]) { rows.append(ratios); note += text }
            printRow(rate, note: note)
        }
        return rows
    }

    /// The sequential step plan of the 256x32 trace, as a single-strategy `moesim replay` of a strategy that
    /// reads no gate weights builds it (`StepPlan(_:weights: false)`), timed beside lru's replay of it in the same
    /// rounds: its rate and its time over lru's (issue 29 asks for at most 0.5).
    func planCases(_ trace: RoutingTrace, plan: StepPlan, model: ModelProfile, hardware: HardwareProfile) throws -> [Row] {
        let name = "plan-256x32-top8"
        guard filter.map({ name.contains($0) }) ?? true else { return [] }
        let spec = ReplaySpec(model: model, hardware: hardware, policy: .lru, budget: .share(0.25))
        var planSeconds: [Double] = [], ratios: [Double] = []
        for _ in 0..<runs {
            var built: StepPlan?
            let building = ContinuousClock().measure { built = StepPlan(trace, weights: false) }
            precondition(built?.accessExpert == plan.accessExpert, "the plan without weights has other accesses")
            built = nil
            let replaying = try ContinuousClock().measure { _ = try Replayer.run(plan: plan, traceName: trace.name, spec: spec) }
            planSeconds.append(building.seconds)
            ratios.append(building.seconds / replaying.seconds)
        }
        let rate = Row(name: name, metric: "plan_accesses_per_s", values: planSeconds.map { Double(plan.accesses) / $0 },
                       unit: "accesses/s")
        let ratio = Row(name: name, metric: "plan_time_vs_lru_replay", values: ratios, unit: "ratio")
        printRow(rate, note: String(format: "%d accesses; plan time / lru replay time: median %.2f (%.2f-%.2f)",
                                    plan.accesses, median(ratios.sorted()), ratios.min()!, ratios.max()!))
        return [rate, ratio]
    }

    /// One run of another build's bench on the same replay cases (a child process): accesses/s by case name.
    func otherBuildRates(_ binary: String) throws -> [(String, Double)] {
        let csvPath = NSTemporaryDirectory() + "moesim-bench-against-\(getpid()).csv"
        defer { try? FileManager.default.removeItem(atPath: csvPath) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["bench", "--runs", "1", "--accesses", "\(accesses)", "--csv", csvPath] + (filter.map { ["--filter", $0] } ?? [])
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("--against \(binary): its bench exited with status \(process.terminationStatus)")
        }
        return try ReportTable.load(csvPath).rows.filter { $0[1] == "replay_accesses_per_s" }.compactMap { row in
            Double(row[2]).map { (row[0], $0) }
        }
    }

    /// Expert FFN GFLOP/s of `ExpertFFN.forward` beside the bare sgemm calls of the same shapes, at Mixtral's and
    /// DeepSeek-V2-Lite's expert shapes divided by 4, for 1, 16 and 128 tokens.
    func kernelCases() throws -> [Row] {
        var rows: [Row] = []
        for (label, preset) in [("mixtral", "mixtral-8x7b"), ("deepseek-v2-lite", "deepseek-v2-lite")] {
            if let filter, !"ffn-\(label)-t".contains(filter) && !filter.hasPrefix("ffn-\(label)-t") { continue }
            let model = try ModelProfile.preset(preset)
            let hidden = model.hidden / 4, ffn = model.expertFFN / 4
            let expert = ExpertFFN(hidden: hidden, ffn: ffn, matrices: model.matrices, seed: 1)
            for tokens in [1, 16, 128] {
                let name = "ffn-\(label)-t\(tokens)"
                if let filter, !name.contains(filter) { continue }
                let flops = 2 * Double(tokens * model.matrices * hidden * ffn)
                var rng = SplitMix64(seed: 9)
                let x = rng.gaussians(tokens * hidden)
                let raw = RawSGEMM(hidden: hidden, ffn: ffn, matrices: model.matrices, tokens: tokens)
                let repeats = max(1, 20_000_000_000 / Int(flops * 1000))  // about 20 GFLOP of work per timed run
                func gflops(_ body: () -> Void) -> [Double] {
                    body()  // warm-up
                    return (0..<runs).map { _ in
                        let elapsed = ContinuousClock().measure { for _ in 0..<repeats { body() } }
                        return flops * Double(repeats) / elapsed.seconds / 1e9
                    }
                }
                let ours = gflops { _ = expert.forward(x, tokens: tokens) }
                let bare = gflops { raw.run() }
                rows.append(Row(name: name, metric: "ffn_gflops", values: ours, unit: "GFLOP/s"))
                printRow(rows.last!, note: "ExpertFFN.forward, expert \(hidden)x\(ffn)", scale: 1)
                rows.append(Row(name: name, metric: "raw_sgemm_gflops", values: bare, unit: "GFLOP/s"))
                printRow(rows.last!, note: String(format: "bare sgemm calls; ours / bare = %.3f",
                                                  median(ours.sorted()) / median(bare.sorted())), scale: 1)
            }
        }
        return rows
    }

    /// Seconds of a Mixtral replay of 256 tokens with and without `--numerics` (scale 16), mixed-precision.
    func numericsCases(_ model: ModelProfile, hardware: HardwareProfile) throws -> [Row] {
        let name = "numerics-mixtral-256tokens"
        if let filter, !name.contains(filter) { return [] }
        var spec = SyntheticTraceSpec(tokens: 256, seed: 7)
        spec.sequences = 2
        let trace = try SyntheticTraceGenerator(model: model, spec: spec).makeTrace(name: "bench-numerics")
        let plan = StepPlan(trace)
        let replay = ReplaySpec(model: model, hardware: hardware, policy: .mixedPrecision, budget: .share(0.25))
        var plain: [Double] = [], withNumerics: [Double] = []
        for _ in 0..<runs {
            plain.append(try ContinuousClock().measure { _ = try Replayer.run(plan: plan, traceName: trace.name, spec: replay) }.seconds)
            withNumerics.append(try ContinuousClock().measure {
                _ = try NumericsRun.replay(trace: trace, plan: plan, spec: replay, options: NumericsOptions())
            }.seconds)
        }
        let rows = [Row(name: name, metric: "replay_seconds", values: plain, unit: "s"),
                    Row(name: name, metric: "replay_numerics_seconds", values: withNumerics, unit: "s")]
        printRow(rows[0], note: "\(plan.accesses) accesses, no numerics", scale: 1)
        printRow(rows[1], note: "--numerics at 1/16 size: \(trace.tokenCount * model.layers) (token, layer) outputs", scale: 1)
        return rows
    }

    /// Loading the large trace from each format: file MB/s and routed ids per second.
    func readingCases(_ trace: RoutingTrace) throws -> [Row] {
        let dir = NSTemporaryDirectory() + "moesim-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rows: [Row] = []
        for format in ["jsonl", "jsonl.gz", "moet"] {
            let name = "read-\(format.replacingOccurrences(of: ".", with: "-"))-256x32-top8"
            if let filter, !name.contains(filter) { continue }
            let path = "\(dir)/trace.\(format)"
            try trace.write(to: path)
            let size = Double((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
            var mbps: [Double] = [], rates: [Double] = []
            for _ in 0..<runs {
                let clock = ContinuousClock()
                var loaded: RoutingTrace?
                let elapsed = try clock.measure { loaded = try RoutingTrace.load(path) }
                let seconds = elapsed.seconds
                mbps.append(size / 1e6 / seconds)
                rates.append(Double(loaded?.recordedRoutings ?? 0) / seconds)
            }
            rows.append(Row(name: name, metric: "read_mb_per_s", values: mbps, unit: "MB/s"))
            printRow(rows.last!, note: String(format: "%.1f MB file", size / 1e6), scale: 1)
            rows.append(Row(name: name, metric: "read_routings_per_s", values: rates, unit: "routings/s"))
            printRow(rows.last!, note: "\(trace.recordedRoutings) routed ids")
        }
        return rows
    }

    /// A 4-strategy x 4-budget sweep of the large trace, with 1 and 2 jobs: cells per second.
    func sweepCases(_ trace: RoutingTrace, model: ModelProfile, hardware: HardwareProfile) throws -> [Row] {
        guard filter.map({ "sweep".contains($0) || $0.contains("sweep") }) ?? true else { return [] }
        let dir = NSTemporaryDirectory() + "moesim-bench-sweep-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/trace.moet"
        try trace.write(to: path)
        let config = SweepConfig(traces: [path], models: [model], hardware: [hardware],
                                 policies: [.onDemand, .lru, .fifo, .pregated], scope: .global, prefetch: PrefetchOptions(),
                                 axes: [.init(key: "budget", values: ["10%", "25%", "50%", "75%"])])
        var rows: [Row] = []
        var outputs: [Data] = []
        for jobs in [1, 2] {
            var whole: [Double] = [], replay: [Double] = []
            for run in 0..<runs {
                let out = dir + "/sweep-\(jobs)-\(run).csv"
                let stats = try SweepRunner(config: config, output: out, jobs: jobs).run()
                whole.append(16 / (stats.setupSeconds + stats.replaySeconds))
                replay.append(16 / stats.replaySeconds)
                if run == 0 { outputs.append(try Data(contentsOf: URL(fileURLWithPath: out))) }
            }
            rows.append(Row(name: "sweep-16cells-256x32-jobs\(jobs)", metric: "sweep_cells_per_s", values: whole, unit: "cells/s"))
            printRow(rows.last!, note: "16 cells of 10 M accesses, trace load and checks included", scale: 1)
            rows.append(Row(name: "sweep-16cells-256x32-jobs\(jobs)", metric: "sweep_replay_cells_per_s", values: replay, unit: "cells/s"))
            printRow(rows.last!, note: "the parallel replay phase alone", scale: 1)
        }
        func speedup(_ metric: String) -> Double {
            let r = rows.filter { $0.metric == metric }
            return median(r[1].values.sorted()) / median(r[0].values.sorted())
        }
        print(String(format: "sweep speed-up with 2 jobs: %.2fx whole, %.2fx replay phase (medians); outputs identical: %@",
                     speedup("sweep_cells_per_s"), speedup("sweep_replay_cells_per_s"), outputs[0] == outputs[1] ? "yes" : "NO"))
        return rows
    }

    /// Peak RSS of `moesim replay` (lru, 25%) as a child process, whole and `--stream`, on Qwen3-shaped traces of
    /// 5,000 and 40,000 tokens: whether replay memory grows with the trace. Children run from the expected smallest
    /// to the largest, because the kernel reports the largest peak of all children so far; they run before the bench
    /// builds its own large traces, since a child's peak also counts what it inherited at fork.
    func streamingMemoryCases() throws -> [Row] {
        guard filter.map({ "memory".contains($0) || $0.contains("memory") }) ?? true else { return [] }
        let dir = NSTemporaryDirectory() + "moesim-bench-memory-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = try ModelProfile.preset("qwen3-30b-a3b")
        var rows: [Row] = []
        let sizes = [5_000, 40_000]
        for tokens in sizes {
            var spec = SyntheticTraceSpec(tokens: tokens, seed: 11)
            spec.sequences = 8
            try SyntheticTraceGenerator(model: model, spec: spec).write(to: "\(dir)/t\(tokens).jsonl.gz")
        }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).path
        for (mode, extra) in [("stream", ["--stream"]), ("whole", [])] {
            for tokens in sizes {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binary)
                process.arguments = ["replay", "\(dir)/t\(tokens).jsonl.gz", "--policy", "lru", "--budget", "25%"] + extra
                process.standardOutput = FileHandle.nullDevice
                try process.run()
                process.waitUntilExit()
                var usage = rusage()
                getrusage(RUSAGE_CHILDREN.rawValue, &usage)
                let mib = Double(usage.ru_maxrss) / 1024
                let name = "memory-\(mode)-qwen3-\(tokens / 1000)k"
                rows.append(Row(name: name, metric: "peak_rss_mib", values: [mib], unit: "MiB"))
                printRow(rows.last!, note: "\(tokens * model.layers * model.topK) routed ids, one run", scale: 1)
            }
        }
        return rows
    }

    /// The process's peak resident memory, beside the sizes of what a replay holds.
    func printMemory(_ trace: RoutingTrace?) {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        guard let trace else { return }
        let traceBytes = trace.experts.count * 2 + trace.weights.count * 4 + trace.tokenCount * 9
        let accesses = trace.tokenCount * trace.header.layers * trace.header.topK
        print("memory: peak RSS \(formatBytes(usage.ru_maxrss * 1024)) for the whole bench; the 256x32 trace holds "
              + "\(formatBytes(traceBytes)) in memory, its step plan \(formatBytes(accesses * 8)), Belady's future index "
              + "\(formatBytes(accesses * 4))")
    }

    func median(_ sorted: [Double]) -> Double {
        sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// One line per case: median (min, max), in millions unless `scale` says otherwise.
    func printRow(_ r: Row, note: String, scale: Double = 1e6) {
        let s = r.values.sorted()
        let name = r.name.padding(toLength: 30, withPad: " ", startingAt: 0)
        let prefix = scale == 1e6 ? " M" : ""
        print("\(name) \(String(format: "%8.2f", median(s) / scale))\(prefix) \(r.unit) median of \(s.count) "
              + "(min \(String(format: "%.2f", s.first! / scale)), max \(String(format: "%.2f", s.last! / scale)))  \(note)")
    }
}
