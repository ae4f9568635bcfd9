/// Several GPUs under expert parallelism (docs/multigpu.md; the rules in docs/simulation.md, "Several GPUs"): each
/// GPU runs the whole strategy (its cache, predictor and miss handler) over the experts the `ExpertMap` gives it,
/// with its own budget and host link; a layer dispatches each token to its experts' GPUs over the interconnect, the
/// GPUs compute, and a combine brings the outputs back; the layer ends when the slowest GPU and the combine are done.
///
///     let result = try MultiGPUReplay.run(plan: plan, traceName: "t", spec: spec)   // spec.hardware.gpus > 1
enum MultiGPUReplay {
    static func run(plan: StepPlan, traceName: String, spec: ReplaySpec, placementUses: [Int]?) throws -> ReplayResult {
        let layout = try BudgetLayout(plan: plan, spec: spec)
        let setup = try Setup(context: plan, spec: spec)
        let traffic = AllToAll(plan: plan, map: setup.map, split: setup.split, spec: spec)
        let runner = LockstepRunner(setup, steps: .plan(traffic), layout: layout, spec: spec,
                                    uses: placementUses ?? Replayer.expertUses(plan))
        let perGPU = try spec.policy.assemble(runner.context(0), runner)
        var result = ReplayResult(traceName: traceName, spec: spec, budgetBytes: layout.budgetBytes, plan: plan,
                                  counters: ReplayCounters(merging: perGPU))
        result.multiGPU = MultiGPUSummary(map: spec.placement.expertMap, gpus: setup.map.gpus, traffic: traffic, perGPU: perGPU,
                                          objective: MapObjective(setup.map, plan: plan))
        return result
    }

    /// A served run (docs/serving.md) on several GPUs: every step `scheduler` forms, each GPU computing its part of
    /// it. `plan` is the trace's sequential plan (the map is made from it); `context`, the plan plan-reading parts
    /// are built on (a fixed order's own plan, or `plan`).
    static func serve(scheduler: ServingScheduler, trace: RoutingTrace, plan: StepPlan, context: StepPlan, layout: BudgetLayout,
                      spec: ReplaySpec, placementUses: [Int]?) throws -> (counters: ReplayCounters, summary: MultiGPUSummary) {
        let setup = try Setup(context: context, spec: spec, mapFrom: plan)
        let traffic = AllToAll(gpus: setup.map.gpus, spec: spec)
        let runner = LockstepRunner(setup, steps: .served(scheduler, trace, traffic), layout: layout, spec: spec,
                                    uses: placementUses ?? Replayer.expertUses(plan))
        let perGPU = try spec.policy.assemble(runner.context(0), runner)
        return (ReplayCounters(merging: perGPU),
                MultiGPUSummary(map: spec.placement.expertMap, gpus: setup.map.gpus, traffic: traffic, perGPU: perGPU,
                                objective: MapObjective(setup.map, plan: plan)))
    }

    /// The settings several GPUs need, and those that apply only to them, before anything runs.
    /// - Throws: `ConfigError.invalidValue` naming the setting.
    static func check(_ spec: ReplaySpec, recordPrecision: Bool, events: Bool) throws {
        let gpus = spec.hardware.gpus
        // With one GPU the map is unused: a sweep over GPU counts keeps its one-GPU cells (a run that names a map
        // with one GPU is refused where settings are checked, `SettingScope`).
        guard gpus > 1 else { return }
        func refuse(_ field: String, _ value: String, _ expected: String) -> ConfigError {
            .invalidValue(field: field, value: value, expected: expected)
        }
        if spec.hardware.interconnectBytesPerSecond <= 0 {
            throw refuse("hardware.interconnect_bytes_per_s", "0", "the GPUs' interconnect rate per direction with \(gpus) GPUs, e.g. 450e9 (NVLink 4) or 25e9 (PCIe 4.0 peer-to-peer)")
        }
        let perNode = spec.hardware.gpusPerNode
        if perNode > 0 && perNode < gpus && spec.hardware.internodeBytesPerSecond <= 0 {
            throw refuse("hardware.internode_bytes_per_s", "0", "the rate between nodes with \(gpus) GPUs in nodes of \(perNode), e.g. 50e9 (400 Gb/s per GPU)")
        }
        if spec.placement.redundantExperts > 0 && spec.placement.expertMap != .replicated {
            throw refuse("placement.redundant_experts", "\(spec.placement.redundantExperts)", "placement.expert_map: replicated (the other maps hold each expert once)")
        }
        if recordPrecision { throw refuse("hardware.gpus", "\(gpus)", "1 with --numerics") }
        if events { throw refuse("hardware.gpus", "\(gpus)", "1 for a timeline or event log (several GPUs report counters only)") }
    }

    /// Routed tokens per flat expert over the plan: what the frequency and EPLB maps balance.
    static func routedTokens(_ plan: StepPlan) -> [Int] {
        var loads = [Int](repeating: 0, count: plan.layers * plan.experts)
        for (e, n) in zip(plan.accessExpert, plan.accessTokens) { loads[Int(e)] += Int(n) }
        return loads
    }
}

/// How an access's tokens are dealt to its expert's replicas: the k-th token of step s routed to an expert with R
/// replicas goes to replica (k + s) mod R, so that one-token steps take turns. The replicas are kept flat (an array
/// of arrays costs a retain per look-up, and set-up visits every access once per GPU).
struct TokenSplit {
    let gpus: Int
    /// Expert e's replicas are `gpu[start[e] ..< start[e + 1]]`.
    private let start: [Int32]
    private let gpu: [Int32]

    init(map: ExpertMap) {
        gpus = map.gpus
        var start: [Int32] = [0], gpu: [Int32] = []
        for replicas in map.replicas {
            gpu += replicas
            start.append(Int32(gpu.count))
        }
        self.start = start; self.gpu = gpu
    }

    /// Calls `body(gpu, tokens)` for each replica of flat expert `e` with the tokens dealt to it.
    @inline(__always)
    func forEachShare(_ n: Int32, of e: Int32, step s: Int, _ body: (Int, Int32) -> Void) {
        let first = Int(start[Int(e)]), r = Int(start[Int(e) + 1]) - first
        if r == 1 { return body(Int(gpu[first]), n) }
        for i in 0..<r { body(Int(gpu[first + i]), Self.dealt(n, replica: i, of: r, step: s)) }
    }

    /// Whether GPU `g` holds a replica of flat expert `e`.
    func holds(gpu g: Int, expert e: Int32) -> Bool { gpu[Int(start[Int(e)])..<Int(start[Int(e) + 1])].contains(Int32(g)) }

    /// The GPU of the replica the k-th token of step s routed to flat expert `e` goes to: replica (k + s) mod R.
    @inline(__always)
    func replica(of e: Int32, token k: Int, step s: Int) -> Int {
        let first = Int(start[Int(e)]), r = Int(start[Int(e) + 1]) - first
        return Int(gpu[first + (k + s) % r])
    }

    /// Tokens k in [0, n) with (k + s) mod r = i.
    @inline(__always)
    static func dealt(_ n: Int32, replica i: Int, of r: Int, step s: Int) -> Int32 {
        let first = ((i - s) % r + r) % r  // the first k dealt to replica i
        return first < Int(n) ? Int32((Int(n) - 1 - first) / r + 1) : 0
    }
}

/// What both kinds of multi-GPU run build first: the map (from the trace's sequential plan), how tokens are dealt to
/// replicas, and each GPU's part of the plan plan-reading strategies are built on.
private struct Setup {
    let map: ExpertMap
    let split: TokenSplit
    let parts: [StepPlan]

    /// - Parameter mapFrom: the plan the map is computed from (the trace's sequential plan; `context` by default).
    init(context: StepPlan, spec: ReplaySpec, mapFrom: StepPlan? = nil) throws {
        let map = try ExpertMap(spec.placement.expertMap, gpus: spec.hardware.gpus, plan: mapFrom ?? context,
                                redundant: spec.placement.redundantExperts)
        self.map = map
        split = TokenSplit(map: map)
        parts = StepPlan.parts(of: context, split: split)
    }
}

/// Builds each GPU's parts from the registry and replays all GPUs layer by layer: the trace's steps in its order, or
/// the steps a serving scheduler forms as the run goes.
private final class LockstepRunner: StrategyRunner {
    enum Steps {
        /// The context plan's steps, with their traffic worked out before the run.
        case plan(AllToAll)
        /// A scheduler's steps over `trace`; their traffic is added to the `AllToAll` step by step.
        case served(ServingScheduler, RoutingTrace, AllToAll)
    }

    let setup: Setup
    let steps: Steps
    let cost: CostModel
    let cache: CacheShape
    let layout: BudgetLayout
    let spec: ReplaySpec
    let uses: [Int]

    init(_ setup: Setup, steps: Steps, layout: BudgetLayout, spec: ReplaySpec, uses: [Int]) {
        self.setup = setup; self.steps = steps; self.layout = layout; self.spec = spec; self.uses = uses
        cost = CostModel(spec)
        cache = CacheShape(partitionOf: layout.partitionOf, capacities: layout.capacities, expertBytes: spec.model.expertBytes)
    }

    /// GPU `g`'s context: its plan, the run's cache shape and settings.
    func context(_ g: Int) -> StrategyContext {
        var c = StrategyContext(plan: setup.parts[g], cache: cache, spec: spec, cost: cost)
        c.largestWorkingSet = layout.largestWorkingSet
        return c
    }

    func run<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Place: Placement>(
        _ policy: Policy, _ predictor: Predictor, _ handler: Handler, _ placement: Place) throws -> [ReplayCounters] {
        var engines = [engine(0, policy, predictor, handler, placement)]
        for g in 1..<setup.parts.count {
            // The same strategy and settings assemble the same concrete types on every GPU.
            let parts = try spec.policy.assemble(context(g), PartsCollector()) as! (Policy, Predictor, Handler, Place)
            engines.append(engine(g, parts.0, parts.1, parts.2, parts.3))
        }
        var cores = engines.map { $0.core.take()! }
        switch steps {
        case let .plan(traffic):
            for g in cores.indices { cores[g].predictor.rebind(setup.parts[g], following: nil) }
            Self.withColumns(setup.parts[...], []) { columns in
                for s in 0..<setup.parts[0].steps {
                    let nonExpert = cost.nonExpertCompute(tokens: columns[0].stepTokens[s], attention: columns[0].attention[s])
                    Self.replayStep(s, &cores, columns, nonExpert: nonExpert, traffic: traffic, at: s * columns[0].layers)
                }
            }
        case let .served(scheduler, trace, traffic):
            try serve(scheduler, trace, traffic, &cores)
        }
        for g in engines.indices { engines[g].core = cores[g] }
        return engines.map { $0.finish() }
    }

    /// Every step `scheduler` forms, from the GPUs' common clock: each GPU's part of the step (a fixed order's parts
    /// are the context's), its tokens' traffic from where their sequences are, its non-expert time the longest of
    /// the GPUs' (each computes its own sequences' tokens: data-parallel attention).
    private func serve<Policy, Predictor, Handler>(_ scheduler: ServingScheduler, _ trace: RoutingTrace, _ traffic: AllToAll,
                                                   _ cores: inout [ReplayCore<Policy, Predictor, Handler, NoEvents>]) throws {
        let G = setup.map.gpus, L = trace.header.layers
        let groups = TokenGroups(gpus: G, capacity: spec.serving.batchLimit)
        var served = 0
        while let run = try scheduler.next(at: cores[0].now) {
            let parts = scheduler.fixedPlan != nil ? setup.parts : StepPlan.parts(of: run.plan, split: setup.split, firstStep: served)
            for g in cores.indices {
                cores[g].predictor.rebind(parts[g], following: nil)
                cores[g].now = max(cores[g].now, run.notBefore)
            }
            let step = scheduler.steps[served]
            groups.start(count: step.parts.count)
            for (i, part) in step.parts.enumerated() {
                groups.place(i, home: Int(trace.seq[part.lowerBound]) % G, single: part.count == 1)
            }
            for l in 0..<L {
                setup.split.fill(groups, layer: l, of: step.parts, in: trace, step: served)
                traffic.addLayer(groups, last: l == L - 1)
            }
            let nonExpert = dataParallelNonExpert(step.parts, trace)
            Self.withColumns(parts[...], []) { columns in
                for s in run.steps { Self.replayStep(s, &cores, columns, nonExpert: nonExpert, traffic: traffic, at: served * L) }
            }
            served += 1
        }
    }

    /// A served step's non-expert time per layer: each GPU computes the attention and dense part of its own
    /// sequences' tokens (as `StepPlanBuilder` counts them for one GPU); the slowest GPU's.
    private func dataParallelNonExpert(_ parts: [Range<Int>], _ trace: RoutingTrace) -> Int64 {
        let G = setup.map.gpus
        var tokens = [Int32](repeating: 0, count: G)
        var attention = [StepAttention](repeating: StepAttention(pairs: 0, kvRead: 0, kvHeld: 0), count: G)
        for part in parts where !part.isEmpty {
            let home = Int(trace.seq[part.lowerBound]) % G
            tokens[home] += Int32(part.count)
            for t in part { attention[home].pairs += Int64(trace.pos[t]) + 1 }
            attention[home].kvRead += Int64(trace.pos[part.upperBound - 1]) + 1
        }
        var longest: Int64 = 0
        for g in 0..<G where tokens[g] > 0 { longest = max(longest, cost.nonExpertCompute(tokens: tokens[g], attention: attention[g])) }
        return longest
    }

    /// Step `s` on every GPU, layer by layer: a layer starts on every GPU at the common clock, its non-expert part
    /// and dispatch first; it ends once the slowest GPU is done and the combine has run. `at`: the step's first
    /// step-layer in `traffic`.
    @inline(__always)
    private static func replayStep<Policy, Predictor, Handler>(
        _ s: Int, _ cores: inout [ReplayCore<Policy, Predictor, Handler, NoEvents>], _ columns: [PlanColumns], nonExpert: Int64,
        traffic: AllToAll, at base: Int) {
        let start = cores[0].now
        for l in 0..<columns[0].layers {
            var end = cores[0].now
            for g in cores.indices {
                if Predictor.isEnabled && l == 0 { cores[g].book.startStep() }
                cores[g].replayLayer(step: s, layer: l, columns[g], nonExpert: nonExpert + traffic.dispatch[base + l])
                end = max(end, cores[g].now)
            }
            end += traffic.combine[base + l]  // once the slowest GPU is done
            for g in cores.indices { cores[g].now = end }
        }
        for g in cores.indices {
            cores[g].counters.recordStep(started: start, latency: cores[g].now - start, firstSteps: columns[g].firstSteps[s],
                                         laterOutputs: columns[g].laterOutputs[s], kvHeld: columns[g].attention[s].kvHeld)
        }
    }

    /// GPU `g`'s engine, its placement made among the experts it holds.
    private func engine<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Place: Placement>(
        _ g: Int, _ policy: Policy, _ predictor: Predictor, _ handler: Handler, _ placement: Place
    ) -> ReplayEngine<Policy, Predictor, Handler, NoEvents> {
        let mine = uses.enumerated().map { setup.map.replicas[$0.offset].contains(Int32(g)) ? $0.element : 0 }
        let split = setup.split
        return ReplayEngine(spec: spec, layers: setup.parts[g].layers, experts: setup.parts[g].experts, cost: cost, cache: cache,
                            budgetBytes: layout.budgetBytes, parts: (policy, predictor, handler, placement), sink: NoEvents(),
                            uses: { mine }, holds: { split.holds(gpu: g, expert: $0) })
    }

    /// Calls `body` with the columns of every plan.
    private static func withColumns(_ plans: ArraySlice<StepPlan>, _ done: [PlanColumns], _ body: ([PlanColumns]) -> Void) {
        guard let first = plans.first else { return body(done) }
        PlanColumns.with(first) { withColumns(plans.dropFirst(), done + [$0], body) }
    }
}

/// Hands back the parts the registry built, for `LockstepRunner` to cast to GPU 0's types.
private struct PartsCollector: StrategyRunner {
    func run<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Place: Placement>(
        _ policy: Policy, _ predictor: Predictor, _ handler: Handler, _ placement: Place) throws -> Any {
        (policy, predictor, handler, placement)
    }
}

/// What a multi-GPU run adds to its report (docs/metrics.md, "Several GPUs").
public struct MultiGPUSummary: Sendable, Equatable {
    public let gpus: Int
    public let map: String
    public let imbalanceMean: Double
    public let imbalanceP99: Double
    public let allToAllBytes: Int
    public let crossShare: Double
    public let hitRateMin: Double
    public let hitRateMax: Double
    public let stallMaxSeconds: Double
    /// The map's load-plus-traffic objective and its lower bound (`MapObjective`).
    public let objective: MapObjective

    init(map: ExpertMap.Kind, gpus: Int, traffic: AllToAll, perGPU: [ReplayCounters], objective: MapObjective) {
        self.gpus = gpus
        self.objective = objective
        self.map = map.description
        let sorted = traffic.imbalance.sorted()
        imbalanceMean = sorted.isEmpty ? 1 : sorted.reduce(0, +) / Double(sorted.count)
        imbalanceP99 = sorted.isEmpty ? 1 : sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)]
        allToAllBytes = traffic.bytes
        crossShare = traffic.routes > 0 ? Double(traffic.crossingRoutes) / Double(traffic.routes) : 0
        let rates = perGPU.map { $0.accesses > 0 ? Double($0.hits) / Double($0.accesses) : 0 }
        hitRateMin = rates.min() ?? 0
        hitRateMax = rates.max() ?? 0
        stallMaxSeconds = Double(perGPU.map(\.stallNanoseconds).max() ?? 0) / 1e9
    }
}

extension ReplayCounters {
    /// The counters of a multi-GPU run: work summed over the GPUs, the clock and step latencies GPU 0's (all GPUs
    /// end every layer together), the link's busy time and the stall averaged per GPU, the peak the largest.
    init(merging parts: [ReplayCounters]) {
        self = parts[0]
        for p in parts.dropFirst() {
            accesses += p.accesses; hits += p.hits; misses += p.misses; bytesH2D += p.bytesH2D
            stallNanoseconds += p.stallNanoseconds; linkBusyNanoseconds += p.linkBusyNanoseconds
            peakExpertBytes = max(peakExpertBytes, p.peakExpertBytes)
            prefetch.issued += p.prefetch.issued; prefetch.useful += p.prefetch.useful; prefetch.late += p.prefetch.late
            prefetch.wasted += p.prefetch.wasted; prefetch.cancelled += p.prefetch.cancelled
            prefetch.bytesPrefetch += p.prefetch.bytesPrefetch; prefetch.bytesWasted += p.prefetch.bytesWasted
            prefetch.refused += p.prefetch.refused; prefetch.predictedCorrect += p.prefetch.predictedCorrect
            prefetch.predicted += p.prefetch.predicted; prefetch.actual += p.prefetch.actual
            lowPrecisionWeight += p.lowPrecisionWeight; bytesSaved += p.bytesSaved
            cpuExperts += p.cpuExperts; cpuNanoseconds += p.cpuNanoseconds; skippedExperts += p.skippedExperts
        }
        stallNanoseconds /= Int64(parts.count)
        linkBusyNanoseconds /= Int64(parts.count)
        if parts[0].tiers != nil { tiers = TierCounters(merging: parts.map { $0.tiers! }) }
    }
}

extension TierCounters {
    /// Each GPU's tiers below it (its own host memory and SSD): counts summed, the capacity one GPU's (every GPU
    /// has the same), the peak the largest GPU's, the SSD's busy time averaged per GPU.
    init(merging parts: [TierCounters]) {
        self = parts[0]
        for p in parts.dropFirst() {
            hits += p.hits; misses += p.misses; late += p.late; prefetchReads += p.prefetchReads
            bypassReads += p.bypassReads; evictions += p.evictions; bytesRead += p.bytesRead
            peakBytes = max(peakBytes, p.peakBytes); linkBusyNanoseconds += p.linkBusyNanoseconds
        }
        linkBusyNanoseconds /= Int64(parts.count)
    }
}
