/// Several GPUs under expert parallelism (docs/multigpu.md; the rules in docs/simulation.md, "Several GPUs"): each
/// GPU runs the whole strategy (its cache, predictor and miss handler) over the experts the `ExpertMap` gives it,
/// with its own budget and host link; a layer dispatches each token to its experts' GPUs over the interconnect, the
/// GPUs compute, and a combine brings the outputs back; the layer ends when the slowest GPU and the combine are done.
///
///     let result = try MultiGPUReplay.run(plan: plan, traceName: "t", spec: spec)   // spec.hardware.gpus > 1
enum MultiGPUReplay {
    static func run(plan: StepPlan, traceName: String, spec: ReplaySpec, placementUses: [Int]?) throws -> ReplayResult {
        let layout = try BudgetLayout(plan: plan, spec: spec)
        let gpus = spec.hardware.gpus
        let map = try ExpertMap(spec.placement.expertMap, gpus: gpus, plan: plan, redundant: spec.placement.redundantExperts)
        let split = TokenSplit(map: map)
        let plans = StepPlan.parts(of: plan, gpus: gpus, deal: { a, s, give in
            split.forEachShare(plan.accessTokens[a], of: plan.accessExpert[a], step: s, give)
        }, holds: { map.replicas[Int($0)].contains(Int32($1)) })
        let traffic = AllToAll(plan: plan, map: map, split: split, spec: spec)
        let cost = CostModel(spec)
        let cache = CacheShape(partitionOf: layout.partitionOf, capacities: layout.capacities, expertBytes: spec.model.expertBytes)
        let uses = placementUses ?? Replayer.expertUses(plan)
        let runner = LockstepRunner(plans: plans, map: map, traffic: traffic, cost: cost, cache: cache, layout: layout,
                                    spec: spec, uses: uses)
        let perGPU = try spec.policy.assemble(runner.context(0), runner)
        var result = ReplayResult(traceName: traceName, spec: spec, budgetBytes: layout.budgetBytes, plan: plan,
                                  counters: ReplayCounters(merging: perGPU))
        result.multiGPU = MultiGPUSummary(map: spec.placement.expertMap, gpus: gpus, traffic: traffic, perGPU: perGPU,
                                          objective: MapObjective(map, plan: plan))
        return result
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
        if spec.hardware.tiers.hasSSD { throw refuse("hardware.gpus", "\(gpus)", "1 with memory tiers below the GPU (several GPUs over an SSD are not modelled yet)") }
        if spec.serving.scheduler != .sequential { throw refuse("hardware.gpus", "\(gpus)", "1 with a batching scheduler (several GPUs replay batch 1 in the trace's order for now)") }
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
    /// Expert e's replicas are `gpu[start[e] ..< start[e + 1]]`.
    private let start: [Int32]
    private let gpu: [Int32]

    init(map: ExpertMap) {
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

    /// Tokens k in [0, n) with (k + s) mod r = i.
    @inline(__always)
    static func dealt(_ n: Int32, replica i: Int, of r: Int, step s: Int) -> Int32 {
        let first = ((i - s) % r + r) % r  // the first k dealt to replica i
        return first < Int(n) ? Int32((Int(n) - 1 - first) / r + 1) : 0
    }
}

/// The interconnect's work per step-layer: the dispatch of each token's hidden state to the GPUs of its experts
/// other than the one it is on, and the combine of their outputs onto the GPU it goes to. A token is on its
/// sequence's GPU (seq mod G: data-parallel attention) before and after every layer; with `token_location: expert`
/// a one-token step's token stays after a layer on the GPU that computed most of its routes (ties: where it was, if
/// among them, else the lower GPU), and returns to its sequence's GPU after the last layer.
struct AllToAll {
    /// Per step-layer (s · L + l): the dispatch's and the combine's duration.
    let dispatch: [Int64]
    let combine: [Int64]
    /// Per step-layer with routes: most tokens on one GPU over the mean (tokens / G).
    let imbalance: [Double]
    /// Bytes both ways, routed (token, expert) pairs, and those dispatched off the token's GPU.
    let bytes: Int
    let routes: Int
    let crossingRoutes: Int

    init(plan: StepPlan, map: ExpertMap, split: TokenSplit, spec: ReplaySpec) {
        let gpus = map.gpus, L = plan.layers, follows = spec.placement.tokenLocation == .expert
        let tokenBytes = Double(spec.model.hidden) * spec.model.bytesPerParam
        let rate = spec.hardware.interconnectBytesPerSecond, latency = spec.hardware.interconnectLatencySeconds
        let perNode = spec.hardware.gpusPerNode > 0 ? spec.hardware.gpusPerNode : gpus
        let interRate = spec.hardware.internodeBytesPerSecond
        // An all-to-all of `near` tokens within the node of GPU `hub` and `far` to or from other nodes: the two
        // links carry theirs at once.
        func duration(near: Int, far: Int) -> Int64 {
            guard near + far > 0 else { return 0 }
            let farSeconds = far > 0 ? Double(far) * tokenBytes / interRate : 0
            return SimTime(seconds: latency + max(Double(near) * tokenBytes / rate, farSeconds)).nanoseconds
        }

        var dispatch = [Int64](repeating: 0, count: plan.steps * L), combine = dispatch, imbalance: [Double] = []
        var moved = 0, routes = 0, crossing = 0
        var load = [Int](repeating: 0, count: gpus)
        for s in 0..<plan.steps {
            let home = Int(plan.stepSeq[s]) % gpus
            let single = follows && plan.stepTokens[s] == 1
            var at = home
            for l in 0..<L {
                for g in 0..<gpus { load[g] = 0 }
                for a in plan.accessRange(step: s, layer: l) {
                    split.forEachShare(plan.accessTokens[a], of: plan.accessExpert[a], step: s) { g, n in load[g] += Int(n) }
                }
                let total = load.reduce(0, +)
                var to = home
                if single && l < L - 1 {
                    to = at
                    for g in 0..<gpus where load[g] > load[to] { to = g }
                }
                let out = total - load[at], back = total - load[to]
                let sent = Self.offHub(at, load, perNode: perNode), gathered = Self.offHub(to, load, perNode: perNode)
                dispatch[s * L + l] = duration(near: sent.near, far: sent.far)
                combine[s * L + l] = duration(near: gathered.near, far: gathered.far)
                moved += out + back; routes += total; crossing += out
                if total > 0 { imbalance.append(Double(load.max()!) / (Double(total) / Double(gpus))) }
                at = to
            }
        }
        self.dispatch = dispatch; self.combine = combine; self.imbalance = imbalance
        bytes = Int((Double(moved) * tokenBytes).rounded()); self.routes = routes; crossingRoutes = crossing
    }

    /// The tokens of a layer (`load` per GPU) computed off GPU `hub`: within its node, and on other nodes. Static,
    /// not a local function: one that captured `load` boxed it, and every update of it paid an exclusivity check
    /// (half the 8-GPU case's speed).
    static func offHub(_ hub: Int, _ load: [Int], perNode: Int) -> (near: Int, far: Int) {
        var near = 0, far = 0
        for g in load.indices where g != hub { if g / perNode == hub / perNode { near += load[g] } else { far += load[g] } }
        return (near, far)
    }
}

/// Builds each GPU's parts from the registry and replays all GPUs layer by layer.
private final class LockstepRunner: StrategyRunner {
    let plans: [StepPlan]
    let map: ExpertMap
    let traffic: AllToAll
    let cost: CostModel
    let cache: CacheShape
    let layout: BudgetLayout
    let spec: ReplaySpec
    let uses: [Int]

    init(plans: [StepPlan], map: ExpertMap, traffic: AllToAll, cost: CostModel, cache: CacheShape, layout: BudgetLayout,
         spec: ReplaySpec, uses: [Int]) {
        self.plans = plans; self.map = map; self.traffic = traffic; self.cost = cost; self.cache = cache
        self.layout = layout; self.spec = spec; self.uses = uses
    }

    /// GPU `g`'s context: its plan, the run's cache shape and settings.
    func context(_ g: Int) -> StrategyContext {
        var c = StrategyContext(plan: plans[g], cache: cache, spec: spec, cost: cost)
        c.largestWorkingSet = layout.largestWorkingSet
        return c
    }

    func run<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Place: Placement>(
        _ policy: Policy, _ predictor: Predictor, _ handler: Handler, _ placement: Place) throws -> [ReplayCounters] {
        var engines = [engine(0, policy, predictor, handler, placement)]
        for g in 1..<plans.count {
            // The same strategy and settings assemble the same concrete types on every GPU.
            let parts = try spec.policy.assemble(context(g), PartsCollector()) as! (Policy, Predictor, Handler, Place)
            engines.append(engine(g, parts.0, parts.1, parts.2, parts.3))
        }
        var cores = engines.map { $0.core.take()! }
        for g in cores.indices { cores[g].predictor.rebind(plans[g], following: nil) }
        Self.withColumns(plans[...], []) { columns in
            let L = plans[0].layers
            for s in 0..<plans[0].steps {
                let start = cores[0].now
                let nonExpert = cost.nonExpertCompute(tokens: columns[0].stepTokens[s], attention: columns[0].attention[s])
                for l in 0..<L {
                    var end = cores[0].now
                    for g in cores.indices {
                        if Predictor.isEnabled && l == 0 { cores[g].book.startStep() }
                        cores[g].replayLayer(step: s, layer: l, columns[g], nonExpert: nonExpert + traffic.dispatch[s * L + l])
                        end = max(end, cores[g].now)
                    }
                    end += traffic.combine[s * L + l]  // once the slowest GPU is done
                    for g in cores.indices { cores[g].now = end }
                }
                for g in cores.indices {
                    cores[g].counters.recordStep(started: start, latency: cores[g].now - start, firstSteps: columns[g].firstSteps[s],
                                                 laterOutputs: columns[g].laterOutputs[s], kvHeld: columns[g].attention[s].kvHeld)
                }
            }
        }
        for g in engines.indices { engines[g].core = cores[g] }
        return engines.map { $0.finish() }
    }

    /// GPU `g`'s engine, its placement made among the experts it holds.
    private func engine<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Place: Placement>(
        _ g: Int, _ policy: Policy, _ predictor: Predictor, _ handler: Handler, _ placement: Place
    ) -> ReplayEngine<Policy, Predictor, Handler, NoEvents> {
        let mine = uses.enumerated().map { map.replicas[$0.offset].contains(Int32(g)) ? $0.element : 0 }
        return ReplayEngine(spec: spec, layers: plans[g].layers, experts: plans[g].experts, cost: cost, cache: cache,
                            budgetBytes: layout.budgetBytes, parts: (policy, predictor, handler, placement), sink: NoEvents(),
                            uses: { mine })
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
    }
}
