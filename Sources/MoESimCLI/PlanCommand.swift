import ArgumentParser
import Foundation
import MoESim

/// `moesim plan`: the inverse question (docs/plan.md). Exit status 0 with a plan, 3 when no strategy reaches the
/// target within the GPU's memory (the best reached is printed), 1 on bad input.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Find the fewest GPU experts that meet a target, per strategy; write the frontier and the settings engines take.",
        discussion: """
            Each strategy's budget is bisected between the smallest a replay accepts and the most experts that fit in \
            the GPU's memory beside the resident weights and the KV cache; the answer's neighbours are replayed too. \
            Writes OUT/frontier.csv (every replay of the search) and its plot OUT/frontier.svg, OUT/plan.journal (what --resume reuses), OUT/plan.yaml (the answer as a run config) and the \
            settings engines take: llama.cpp's flags and KTransformers' rules for an n-cpu-moe answer, SGLang's and \
            vLLM's on several GPUs. Exit status: 0 a plan, 3 no strategy reaches the target, 1 bad \
            input. A --trace without --model brings its own model (its preset, or the profile beside it). Example: \
            moesim plan --hardware rtx4090 --target tokens_per_s=5 --margin 0.3
            """)

    @OptionGroup var inputs: RunInputArguments

    @Option(help: ArgumentHelp("What to reach: tokens_per_s=V (at least), tpot_p99_s=V or ttft_p99_s=V (at most), goodput_rps=V (at least, with SLOs); METRIC=best: the best within the GPU's memory (with --gpu-memory: within that limit).",
                               valueName: "metric=value"))
    var target: String

    @Option(help: "Strategies to plan, comma-separated.")
    var policies: String = "lru,lfu,arc,pregated,cpu-fallback,n-cpu-moe"

    @Option(help: "Headroom on the target: 0.3 asks for 30% more speed, or 30% less latency, than the target.")
    var margin: Double = 0

    @Option(help: "GPU memory the plan may use (e.g. 20GiB; default: the hardware's).")
    var gpuMemory: String?

    @Option(help: "Strategies searched at once (the plan does not depend on it).")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: ArgumentHelp("Also search a setting, as a sweep axis (docs/sweep.md): KEY=V1,V2,… such as serving.max_seqs=4,8,16 or hardware.gpus=1,2,4 (repeatable: every combination). The answer is the fewest experts on all GPUs together.", valueName: "key=values"))
    var vary: [String] = []

    @Flag(help: "Reuse the replays of an earlier plan over the same trace and settings (OUT/plan.journal), e.g. one that was killed or asked for another target.")
    var resume = false

    @Option(help: "Folder for frontier.csv and plan.yaml.")
    var out: String = "reports/plan"

    @OptionGroup var prefetch: PrefetchArguments

    @OptionGroup var precision: PrecisionArguments

    @OptionGroup(title: "Serving") var serving: ServingArguments

    @OptionGroup var placement: PlacementArguments


    func run() throws {
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        var cfg = try inputs.load(modelFromTrace: true)
        cfg.prefetch = try prefetch.options(base: cfg.prefetch)
        cfg.precision = try precision.options(base: cfg.precision)
        cfg.serving = try serving.options(base: cfg.serving)
        cfg.placement = try placement.options(base: cfg.placement)
        let goal = try PlanTarget.parse(target)
        let strategies = try commaList(policies, option: "policies", expected: "a strategy") { try PolicyKind.named($0) }
        // Options given here must apply to a strategy searched (the config's sections may serve others it lists).
        try SettingScope.check(prefetch.given + precision.given + placement.given + serving.given, policies: strategies,
                               schedulers: [cfg.serving.scheduler], gpus: [cfg.hardware.gpus])
        let limit = try gpuMemory.map { text -> Double in
            guard case let .bytes(b) = try Budget.parse(text) else {
                throw ValidationError("--gpu-memory takes bytes (e.g. 20GiB or 24e9), not a share or a count of experts; got '\(text)'")
            }
            return Double(b)
        }
        var files = FileRoles()
        inputs.inputs(cfg, &files)
        let frontierPath = (out as NSString).appendingPathComponent("frontier.csv")
        let planPath = (out as NSString).appendingPathComponent("plan.yaml")
        files.output("--out", frontierPath)
        files.output("--out", planPath)
        files.output("--out", (out as NSString).appendingPathComponent("frontier.svg"))
        files.output("--out", (out as NSString).appendingPathComponent("ktransformers-rules.yaml"))
        files.output("--out", (out as NSString).appendingPathComponent("sglang-expert-location.json"))
        files.output("--out", (out as NSString).appendingPathComponent("plan.journal"))
        try files.check()

        let routing = try RoutingTrace.loadForReplay(cfg.tracePath)
        let steps = StepPlan(routing)
        var base = ReplaySpec(model: cfg.model, hardware: cfg.hardware, policy: .lru, scope: cfg.scope, budget: cfg.budget,
                              prefetch: cfg.prefetch, precision: cfg.precision, serving: cfg.serving, runtime: cfg.runtime)
        base.placement = cfg.placement
        let cells = try Self.cells(vary, base: base)
        print("\(routing.name): \(cfg.model.name) on \(cfg.hardware.name) (\(cfg.runtime.name) runtime), target \(goal)"
              + (margin > 0 ? " with \(Human.percent(margin)) margin: \(String(format: "%.4g", goal.goal(margin: margin))) \(goal.metric.rawValue)" : ""))
        print(ValidationRecord.note(runtime: cfg.runtime, presetNames: RuntimeProfile.presetNames))
        let journalPath = (out as NSString).appendingPathComponent("plan.journal")
        let journal = try PlanJournal(path: journalPath, inputs: try PlanJournal.inputs(version: MoESimCommand.configuration.version,
                                                                                        trace: cfg.tracePath, cells: cells.map(\.spec)),
                                      resume: resume)
        if resume { print("resumed: \(journal.kept.count) replays from \(journalPath)") }
        var searched: [(cell: Cell, plans: [StrategyPlan], memory: MemorySplit)] = []
        for (index, cell) in cells.enumerated() {
            var planner = try Planner(trace: routing, plan: steps, base: cell.spec, target: goal, margin: margin, memoryLimitBytes: limit)
            planner.journal = journal
            planner.cell = index
            // A pruned grid: budgets whose experts on all GPUs together reach the cheapest answer so far cannot beat it.
            let found = searched.flatMap { $0.plans.compactMap { $0.cheapest?.expertsOnAllGPUs } }.min()
            planner.ceiling = found.map { ($0 - 1) / cell.spec.hardware.gpus }
            let m = planner.memory
            if !cell.label.isEmpty { print("\n\(cell.label):") }
            print("GPU memory \(formatBytes(Int(m.gpuBytes))): resident weights \(formatBytes(Int(m.residentBytes))), KV cache "
                  + "\(formatBytes(Int(m.kvBytes))) (the longest sequence × \(cell.spec.serving.batchLimit) at once), experts up to "
                  + "\(formatBytes(Int(m.expertRoomBytes))): \(m.expertsThatFit) of \(m.totalExperts) experts of \(formatBytes(m.expertBytes))"
                  + (cell.spec.hardware.gpus > 1 ? " per GPU, \(cell.spec.hardware.gpus) GPUs" : ""))
            let plans = try planner.run(policies: strategies, jobs: jobs)
            print(table(plans, goal))
            searched.append((cell, plans, m))
        }
        // The answer: the fewest experts on all GPUs together; ties: the better figure, then the order searched.
        let candidates = searched.flatMap { s in s.plans.compactMap { p in p.cheapest.map { (s, p, $0) } } }
        let best = Planner.choose(candidates.map(\.2), target: goal).map { candidates[$0] }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let varied = cells.first?.settings.map(\.key) ?? []
        try CSVFile.write(rows: searched.flatMap { s in frontierRows(s.plans, chosen: best?.2, goal).map { s.cell.settings.map(\.value) + $0 } },
                          header: varied + Self.frontierHeader, to: frontierPath)
        let plotPath = (out as NSString).appendingPathComponent("frontier.svg")
        let plot = LinePlot(table: try ReportTable.load(frontierPath), x: "budget_experts", y: "value",
                            title: "\(routing.name): \(goal.metric.rawValue) against GPU experts (goal \(String(format: "%.4g", goal.goal(margin: margin))))")
        try AtomicFileSink.write(try plot.svg(), to: plotPath)
        print("wrote \(frontierPath) (\(searched.reduce(0) { $0 + $1.plans.reduce(0) { $0 + $1.points.count } }) replays) and \(plotPath)")
        guard let (cellSearch, chosen, answer) = best else {
            let reached = searched.flatMap { s in s.plans.compactMap { $0.best(goal) } }.max { a, b in
                goal.metric.higherIsBetter ? a.figure! < b.figure! : a.figure! > b.figure!
            }
            let detail = reached.map { "; the best reached is \(String(format: "%.4g", $0.figure!)) with \($0.policy.rawValue) at \($0.budgetExperts) experts" } ?? ""
            let room = searched.map(\.memory.expertsThatFit).max() ?? 0
            fflush(nil)  // the table first, then the verdict
            FileHandle.standardError.write(Data("no strategy reaches \(goal) within \(room) experts of GPU memory\(detail)\n".utf8))
            throw ExitCode(3)
        }
        let plans = cellSearch.plans
        if !cellSearch.cell.label.isEmpty { print("chosen: \(cellSearch.cell.label)") }
        print(sentence(chosen, answer, goal))
        for odd in plans.flatMap(\.irregular) {
            print("note: \(odd.policy.rawValue) is not monotone here: \(odd.budgetExperts) experts give \(String(format: "%.4g", odd.figure ?? .nan)) (\(odd.meets ? "meets" : "misses") the target)")
        }
        let tracePath = URL(fileURLWithPath: cfg.tracePath).standardizedFileURL.path
        try AtomicFileSink.write(EngineSettings.moesimConfig(answer, tracePath: tracePath), to: planPath)
        print("wrote \(planPath) (replay it: moesim compare --config \(planPath))")
        if answer.spec.hardware.gpus > 1 {
            let spec = answer.spec, map = try ExpertMap(spec.placement.expertMap, gpus: spec.hardware.gpus, plan: steps,
                                                               redundant: spec.placement.redundantExperts)
            let location = EngineSettings.sglangExpertLocation(map, layers: cfg.model.layers, experts: cfg.model.experts)
            if let json = location.json {
                let path = (out as NSString).appendingPathComponent("sglang-expert-location.json")
                try AtomicFileSink.write(json, to: path)
                print("SGLang (\(spec.placement.expertMap) map on \(spec.hardware.gpus) GPUs): --ep-size \(spec.hardware.gpus) "
                      + "--ep-num-redundant-experts \(spec.placement.redundantExperts) --init-expert-location \(path)")
            } else if let reason = location.reason {
                print("SGLang: no --init-expert-location for this map: \(reason)")
            }
            let vllm = EngineSettings.vllm(spec.placement.expertMap, gpus: spec.hardware.gpus, redundant: spec.placement.redundantExperts)
            print("vLLM: " + (vllm.flags ?? "no flags for this map: \(vllm.reason ?? "")"))
        }
        for p in plans {
            guard let a = p.cheapest, let flags = EngineSettings.ktransformersSGLang(p.policy, rest: a.spec.placement.rest, experts: a.budgetExperts) else { continue }
            print("SGLang with KTransformers (\(p.policy.rawValue) at \(experts(a.budgetExperts))): \(flags)  "
                  + "(EXPERT_DISTRIBUTION.pt: SGLang's --expert-distribution-recorder output for your traffic)")
        }
        for p in plans where p.policy == .nCpuMoe {
            guard let a = p.cheapest else { continue }
            let layers = a.spec.placement.cpuLayers(model: cfg.model, budgetBytes: a.budgetBytes)
            if let rules = EngineSettings.ktransformersRules(cpuLayers: layers, layers: cfg.model.layers, model: cfg.model.name) {
                let path = (out as NSString).appendingPathComponent("ktransformers-rules.yaml")
                try AtomicFileSink.write(rules, to: path)
                print("KTransformers (n-cpu-moe at \(experts(a.budgetExperts))): optimize rules in \(path)")
            }
            if let flags = EngineSettings.llamaCpp(cpuLayers: layers) {
                print("llama.cpp (n-cpu-moe at \(experts(a.budgetExperts))): \(flags.nCpuMoe)   or   \(flags.overrideTensor)")
            } else {
                print("llama.cpp (n-cpu-moe at \(experts(a.budgetExperts))): every layer's experts on the GPU (no --n-cpu-moe)")
            }
        }
    }

    func experts(_ n: Int) -> String { n == 1 ? "1 expert" : "\(n) experts" }

    /// One combination of the `--vary` settings, applied to the base settings.
    struct Cell {
        let settings: [(key: String, value: String)]
        let spec: ReplaySpec
        var label: String { settings.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") }
    }

    /// Every combination of `vary`'s values (each `KEY=V1,V2,…`, a sweep axis's key), in the order given.
    static func cells(_ vary: [String], base: ReplaySpec) throws -> [Cell] {
        var cells = [Cell(settings: [], spec: base)]
        for item in vary {
            guard let eq = item.firstIndex(of: "="), case let key = String(item[..<eq]), !key.isEmpty else {
                throw ValidationError("--vary expects KEY=V1,V2,… with KEY a sweep axis (docs/sweep.md), e.g. serving.max_seqs=4,8,16; got '\(item)'")
            }
            let values = item[item.index(after: eq)...].split(separator: ",", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            guard !values.contains(where: \.isEmpty), Set(values).count == values.count else {
                throw ValidationError("--vary \(key): values must be given once each and not be empty; got '\(item)'")
            }
            cells = try cells.flatMap { cell in
                try values.map { value in
                    var spec = cell.spec
                    try SweepConfig.apply(key, value, to: &spec)
                    return Cell(settings: cell.settings + [(key, value)], spec: spec)
                }
            }
        }
        return cells
    }

    static let frontierHeader = ["policy", "budget_experts", "budget_bytes", "metric", "value", "meets", "chosen", "hit_rate"]

    /// Every replay of the search, by strategy (in the order given), then budget.
    func frontierRows(_ plans: [StrategyPlan], chosen: PlanPoint?, _ goal: PlanTarget) -> [[String]] {
        plans.flatMap { plan in
            plan.points.map { p in
                [p.policy.rawValue, "\(p.budgetExperts)", "\(p.budgetBytes)", goal.metric.rawValue,
                 p.figure.map { "\($0)" } ?? "", p.meets ? "1" : "0",
                 chosen.map { $0.policy == p.policy && $0.budgetExperts == p.budgetExperts } == true ? "1" : "0",
                 p.hitRate.map { "\($0)" } ?? ""]
            }
        }
    }

    /// Per strategy: its answer and the step below, or what it reached.
    func table(_ plans: [StrategyPlan], _ goal: PlanTarget) -> String {
        var rows = [["policy", "experts", "GPU bytes", goal.metric.rawValue, "one fewer step", "replays"]]
        for p in plans {
            let f = { (v: Double?) in v.map { String(format: "%.4g", $0) } ?? "–" }
            if let a = p.cheapest {
                rows.append([p.policy.rawValue, "\(a.budgetExperts)", formatBytes(a.budgetBytes), f(a.figure),
                             p.below.map { "\($0.budgetExperts): \(String(format: "%.6g", $0.figure ?? .nan))" } ?? (goal.best ? "–" : "smallest"),
                             "\(p.points.count)"])
            } else if p.pruned {
                rows.append([p.policy.rawValue, "pruned", "–", "–", "not below a cheaper answer", "\(p.points.count)"])
            } else {
                let best = p.best(goal)
                rows.append([p.policy.rawValue, "not reached", "–", "best \(f(best?.figure))", best.map { "at \($0.budgetExperts)" } ?? "–",
                             "\(p.points.count)"])
            }
        }
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, c in i == 0 ? c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
                                              : String(repeating: " ", count: widths[i] - c.count) + c }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// "12.3 GiB of experts (36 experts), lru: 5.2 tokens/s; the next step down (35 experts) misses by 4%."
    func sentence(_ plan: StrategyPlan, _ a: PlanPoint, _ goal: PlanTarget) -> String {
        let figure = a.figure.map { String(format: "%.4g", $0) } ?? "–"
        if goal.best {
            return "plan: the best \(goal.metric.rawValue) within the GPU's memory: \(plan.policy.rawValue), \(figure) "
                + "\(goal.metric.unitName) with \(formatBytes(a.budgetBytes)) of experts (\(experts(a.budgetExperts)), all that fit)"
        }
        var s = "plan: \(formatBytes(a.budgetBytes)) of experts (\(experts(a.budgetExperts))), \(plan.policy.rawValue), \(figure) \(goal.metric.unitName)"
        if let b = plan.below, let short = goal.shortfall(b.figure, margin: margin) {
            s += "; the next step down (\(experts(b.budgetExperts))) misses the goal by \(String(format: "%.3g", 100 * short))%"
        } else {
            s += "; the smallest budget a replay accepts already meets it"
        }
        return s
    }
}

extension PlanTarget.Metric {
    /// The unit a sentence names.
    var unitName: String {
        switch self {
        case .tokensPerSecond: "tokens/s"
        case .tpotP99: "s TPOT p99"
        case .ttftP99: "s TTFT p99"
        case .goodput: "requests/s within SLOs"
        }
    }
}
