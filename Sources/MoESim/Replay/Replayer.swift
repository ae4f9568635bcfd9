/// What one replay is asked to do: a model on a GPU under one policy and budget.
public struct ReplaySpec: Sendable, Equatable {
    public var model: ModelProfile
    public var hardware: HardwareProfile
    /// The serving runtime's overheads; `ideal` is the pure roofline.
    public var runtime: RuntimeProfile
    public var policy: PolicyKind
    public var scope: CacheScope
    public var budget: Budget
    public var prefetch: PrefetchOptions
    public var precision: PrecisionOptions
    /// Arrivals and batching; the default is sequential batch-1 replay.
    public var serving: ServingOptions
    /// The static placement strategies' settings (`static-frequency`, `n-cpu-moe`).
    public var placement = PlacementOptions()

    public init(model: ModelProfile, hardware: HardwareProfile, policy: PolicyKind, scope: CacheScope = .global,
                budget: Budget, prefetch: PrefetchOptions = PrefetchOptions(), precision: PrecisionOptions = PrecisionOptions(),
                serving: ServingOptions = ServingOptions(), runtime: RuntimeProfile = .ideal) {
        self.model = model; self.hardware = hardware; self.runtime = runtime; self.policy = policy; self.scope = scope; self.budget = budget
        self.prefetch = prefetch; self.precision = precision; self.serving = serving
    }
}

extension CostModel {
    /// The durations of `spec`'s model, hardware and runtime, with its strategy's predictor charged if it runs one.
    init(_ spec: ReplaySpec) {
        self.init(model: spec.model, hardware: spec.hardware, runtime: spec.runtime, chargesPredictor: spec.policy.runsPredictor)
    }
}

/// Checks a spec against a trace and runs the replay with the policy's concrete type.
///
///     let result = try Replayer.run(plan: plan, traceName: "mixtral-synth", spec: spec)
///     result.counters.hits
///
/// All configuration errors surface here, before any simulated time passes.
public enum Replayer {
    /// - Throws: `ConfigError` when the trace does not match the model, or the budget is impossible.
    /// - Parameter recordPrecision: keep how each access was computed (`ReplayResult.precisionLog`), for numerics.
    public static func run(plan: StepPlan, traceName: String, spec: ReplaySpec, recordPrecision: Bool = false) throws -> ReplayResult {
        var sink = NoEvents()
        return try run(plan: plan, traceName: traceName, spec: spec, sink: &sink, recordPrecision: recordPrecision)
    }

    /// The same, reporting every event to `sink` (scenario tests, timelines).
    public static func run<Sink: EventSink>(plan: StepPlan, traceName: String, spec: ReplaySpec,
                                            sink: inout Sink, recordPrecision: Bool = false) throws -> ReplayResult {
        try run(plan: plan, traceName: traceName, spec: spec, sink: &sink, recordPrecision: recordPrecision, placementUses: nil)
    }

    /// `placementUses`: the expert counts a placement learns from (nil: the plan's own).
    static func run<Sink: EventSink>(plan: StepPlan, traceName: String, spec: ReplaySpec, sink: inout Sink,
                                     recordPrecision: Bool, placementUses: [Int]?) throws -> ReplayResult {
        guard plan.hasWeights || !plan.recordsWeights || !spec.policy.readsGateWeights else {
            throw ConfigError.invalidValue(field: "policy", value: spec.policy.rawValue,
                                           expected: "a step plan that keeps the gate weights (StepPlan(_:weights: true))")
        }
        try MultiGPUReplay.check(spec, recordPrecision: recordPrecision, events: Sink.isEnabled)
        if spec.hardware.gpus > 1 {
            return try MultiGPUReplay.run(plan: plan, traceName: traceName, spec: spec, placementUses: placementUses)
        }
        let layout = try BudgetLayout(plan: plan, spec: spec)
        let replayed = try replay(first: plan, next: { nil }, layout: layout, spec: spec, sink: &sink,
                                  expertUses: { placementUses ?? expertUses(plan) }, recordPrecision: recordPrecision)
        var result = ReplayResult(traceName: traceName, spec: spec, budgetBytes: layout.budgetBytes, plan: plan,
                                  counters: replayed.counters)
        result.precisionLog = replayed.precisionLog
        return result
    }

    /// Serves `trace` under `spec.serving`: its sequences are requests that arrive and are batched by the scheduler
    /// (docs/serving.md); `plan` is the trace's sequential plan (the budget checks read it). The oracles (`belady`,
    /// `oracle-prefetch`: `PolicyKind.readsFutureSteps`) replay the step order of a first pass under `lru`, since the
    /// order depends on timing and they need it in advance.
    public static func serve(trace: RoutingTrace, plan: StepPlan, spec: ReplaySpec) throws -> (result: ReplayResult, log: ServingLog) {
        var sink = NoEvents()  // a concrete sink, so that the loop is specialised in this module
        return try serve(trace: trace, plan: plan, spec: spec, sink: &sink)
    }

    /// The same without the sequential plan: on one GPU only what the checks need of it is counted
    /// (`SequentialFacts`), since the scheduler forms its own steps; several GPUs still build it (their maps read it).
    public static func serve(trace: RoutingTrace, spec: ReplaySpec) throws -> (result: ReplayResult, log: ServingLog) {
        var sink = NoEvents()
        return try serve(trace: trace, sequential: SequentialRun(trace), spec: spec, sink: &sink, placementUses: nil)
    }

    /// The same, reporting every event to `sink` (scenario tests); `placementUses` as for `run`.
    public static func serve<Sink: EventSink>(trace: RoutingTrace, plan: StepPlan, spec: ReplaySpec,
                                              sink: inout Sink, placementUses: [Int]? = nil) throws -> (result: ReplayResult, log: ServingLog) {
        try serve(trace: trace, sequential: SequentialRun(trace, plan: plan), spec: spec, sink: &sink, placementUses: placementUses)
    }

    private static func serve<Sink: EventSink>(trace: RoutingTrace, sequential: SequentialRun, spec: ReplaySpec,
                                               sink: inout Sink, placementUses: [Int]?) throws -> (result: ReplayResult, log: ServingLog) {
        try MultiGPUReplay.check(spec, recordPrecision: false, events: Sink.isEnabled)
        let layout = try BudgetLayout(extent: sequential.extent, spec: spec)
        try checkServing(trace: trace, spec: spec, layout: layout)
        try requireWeights(spec, trace.hasWeights)
        var order: [ServingScheduler.Step]?
        if spec.policy.readsFutureSteps {
            var first = spec
            first.policy = .lru
            var none = NoEvents()
            order = try serve(trace: trace, sequential: sequential, spec: first, layout: layout, sink: &none, fixedOrder: nil,
                              placementUses: placementUses).scheduler.steps
        }
        let served = try serve(trace: trace, sequential: sequential, spec: spec, layout: layout, sink: &sink, fixedOrder: order,
                               placementUses: placementUses)
        let log = served.scheduler.log, steps = served.scheduler.steps
        var totals = sequential.totals
        totals.steps = steps.count
        var result = ReplayResult(traceName: trace.name, spec: spec, budgetBytes: layout.budgetBytes, totals: totals,
                                  counters: served.counters)
        result.multiGPU = served.multiGPU
        result.serving = ServingSummary(log, steps: steps, simSeconds: result.simSeconds, slo: spec.serving.slo)
        return (result, log)
    }

    /// One pass of a served run (the layout is the served strategy's, which the `lru` first pass shares).
    private static func serve<Sink: EventSink>(trace: RoutingTrace, sequential: SequentialRun, spec: ReplaySpec, layout: BudgetLayout,
                                               sink: inout Sink, fixedOrder: [ServingScheduler.Step]?,
                                               placementUses: [Int]?) throws -> (scheduler: ServingScheduler, counters: ReplayCounters,
                                                                                 multiGPU: MultiGPUSummary?) {
        let scheduler = try makeScheduler(trace: trace, spec: spec, layout: layout, fixedOrder: fixedOrder)
        if spec.hardware.gpus > 1 {
            let plan = sequential.plan
            let served = try MultiGPUReplay.serve(scheduler: scheduler, trace: trace, plan: plan, context: scheduler.fixedPlan ?? plan,
                                                  layout: layout, spec: spec, placementUses: placementUses)
            return (scheduler, served.counters, served.summary)
        }
        var source = scheduler
        let counters = try replay(source: &source, context: scheduler.fixedPlan ?? sequential.shape, layout: layout, spec: spec,
                                  sink: &sink, expertUses: { placementUses ?? sequential.uses }, recordPrecision: false).counters
        return (scheduler, counters, nil)
    }

    /// Every check `replay(trace:plan:spec:)` makes before simulated time passes, without replaying: a sweep runs it
    /// on each cell before the first one runs, so that a later cell's mistake costs no time and leaves no journal.
    /// `sequences`: the trace's sequence count, when the caller has counted it.
    public static func check(trace: RoutingTrace, plan: StepPlan, spec: ReplaySpec, sequences: Int? = nil) throws {
        let layout = try BudgetLayout(plan: plan, spec: spec)
        try requireWeights(spec, trace.hasWeights)
        try MultiGPUReplay.check(spec, recordPrecision: false, events: false)
        if spec.hardware.gpus > 1 {
            _ = try ExpertMap(spec.placement.expertMap, gpus: spec.hardware.gpus, plan: plan, redundant: spec.placement.redundantExperts)
        }
        if spec.policy.learnsPlacement {
            try trace.checkSplittable(sequences: sequences ?? trace.sequenceCount, trainShare: spec.placement.trainSplit)
        }
        if spec.serving.scheduler != .sequential {
            try checkServing(trace: trace, spec: spec, layout: layout, sequences: sequences)
            _ = try makeScheduler(trace: trace, spec: spec, layout: layout, fixedOrder: nil)
        }
    }

    /// Strategies that decide by gate weight need a trace (or streamed chunk) that has them.
    private static func requireWeights(_ spec: ReplaySpec, _ hasWeights: Bool) throws {
        guard hasWeights || !spec.policy.readsGateWeights else {
            throw ConfigError.invalidValue(field: "policy", value: spec.policy.rawValue,
                                           expected: "a trace with gate weights (its lines have no 'weights')")
        }
    }

    /// Arrivals add time of their own: a run they would carry past the clock's range is refused before it starts.
    private static func checkServing(trace: RoutingTrace, spec: ReplaySpec, layout: BudgetLayout, sequences: Int? = nil) throws {
        try spec.serving.validate()
        let horizon = spec.serving.arrivals.horizonSeconds(requests: sequences ?? trace.sequenceCount, in: trace) + layout.worstSeconds
        if !(horizon * 1e9 <= Double(Limits.simulatedNanoseconds)) {
            throw ConfigError.invalidValue(field: "serving.arrivals", value: spec.serving.arrivals.label,
                                           expected: "arrivals that end, with the run's worst case of \(String(format: "%.3g", layout.worstSeconds)) s, within \(Limits.simulatedNanoseconds / 1_000_000_000) s (about 146 years) of simulated time; these reach \(String(format: "%.3g", horizon)) s: a higher rate, a shorter think time or fewer requests")
        }
    }

    /// The scheduler of a served run, with the KV room `layout` leaves (it refuses a request that cannot fit alone).
    private static func makeScheduler(trace: RoutingTrace, spec: ReplaySpec, layout: BudgetLayout,
                                      fixedOrder: [ServingScheduler.Step]?) throws -> ServingScheduler {
        let perToken = spec.model.kvBytesPerToken
        let room = perToken > 0 ? layout.kvRoomBytes / perToken : .infinity
        return try ServingScheduler(trace: trace, options: spec.serving, weights: spec.policy.readsGateWeights,
                                    kvRoomTokens: room < 9e18 ? Int64(room) : .max, kvPools: spec.hardware.gpus,
                                    fixedOrder: fixedOrder)
    }

    /// A whole trace under `spec`, as the CLI and sweeps replay it: batch 1 in the trace's order, or served by a
    /// batching scheduler (`plan` is the trace's sequential plan). A strategy that learns its placement
    /// (`static-frequency`) learns it on the first `placement.train_split` of the sequences and is measured on the
    /// rest; the same placement on the training part is kept beside (`ReplayResult.trainPart`).
    public static func replay(trace: RoutingTrace, plan: StepPlan, spec: ReplaySpec) throws -> ReplayResult {
        func whole(_ trace: RoutingTrace, _ plan: StepPlan, uses: [Int]?) throws -> ReplayResult {
            var sink = NoEvents()
            return spec.serving.scheduler != .sequential
                ? try serve(trace: trace, plan: plan, spec: spec, sink: &sink, placementUses: uses).result
                : try run(plan: plan, traceName: trace.name, spec: spec, sink: &sink, recordPrecision: false, placementUses: uses)
        }
        guard spec.policy.learnsPlacement else { return try whole(trace, plan, uses: nil) }
        try spec.placement.validate()
        let (train, test) = try trace.split(trainShare: spec.placement.trainSplit)
        let trainPlan = StepPlan(train)
        let uses = expertUses(trainPlan)
        var result = try whole(test, StepPlan(test), uses: uses)
        let inSample = try whole(train, trainPlan, uses: uses)
        result.trainPart = TrainPart(share: spec.placement.trainSplit, tokens: inSample.tokens, hitRate: inSample.hitRate,
                                     tokensPerSecond: inSample.tokensPerSecond)
        return result
    }

    /// Replays a `.jsonl`, `.jsonl.gz` or `.moet` trace in chunks of about `chunkTokens` tokens (whole steps), so that memory
    /// does not grow with the trace: a first pass checks every line and measures what the budget checks and
    /// `cpu-fallback`'s placement need (largest working sets, uses per expert); the second replays chunk by chunk.
    /// Results equal `run`'s on the whole trace. Not for `belady`, whose future index needs the whole trace.
    public static func stream(path: String, spec: ReplaySpec, chunkTokens: Int = 1024) throws -> ReplayResult {
        try MultiGPUReplay.check(spec, recordPrecision: false, events: false)
        if spec.hardware.gpus > 1 {
            throw ConfigError.invalidValue(field: "hardware.gpus", value: "\(spec.hardware.gpus)",
                                           expected: "1 with --stream (several GPUs replay the whole trace: leave out --stream)")
        }
        if spec.policy == .belady {
            throw ConfigError.invalidValue(field: "policy", value: "belady",
                                           expected: "a strategy that does not index the future (belady needs the whole trace: replay without --stream)")
        }
        var extent: PlanExtent?, uses: [Int] = []
        var chunks = try TraceChunks(path: path, tokens: chunkTokens)
        while let (chunk, previousSeq) = try chunks.next() {
            let plan = StepPlan(chunk, previousSeq: previousSeq)
            if extent == nil {
                extent = PlanExtent(plan)
                uses = Array(repeating: 0, count: plan.layers * plan.experts)
            } else {
                extent!.add(plan)
            }
            for (e, n) in expertUses(plan).enumerated() { uses[e] += n }
        }
        guard let extent else { throw TraceError.noTokens(path: path) }
        let layout = try BudgetLayout(extent: extent, spec: spec)
        chunks = try TraceChunks(path: path, tokens: chunkTokens)
        var totals = TraceTotals()
        func nextPlan() throws -> StepPlan? {
            guard let (chunk, previousSeq) = try chunks.next() else { return nil }
            let plan = StepPlan(chunk, previousSeq: previousSeq)
            totals.add(plan)
            return plan
        }
        guard let first = try nextPlan() else { throw TraceError.noTokens(path: path) }
        var sink = NoEvents()
        let replayed = try replay(first: first, next: nextPlan, layout: layout, spec: spec, sink: &sink,
                                  expertUses: { uses }, recordPrecision: false)
        return ReplayResult(traceName: RoutingTrace.traceName(path), spec: spec, budgetBytes: layout.budgetBytes,
                            totals: totals, counters: replayed.counters)
    }

    /// How often the plan routes to each expert (flat ids).
    static func expertUses(_ plan: StepPlan) -> [Int] {
        var uses = [Int](repeating: 0, count: plan.layers * plan.experts)
        for e in plan.accessExpert { uses[Int(e)] += 1 }
        return uses
    }

    /// Builds the strategy from the registry and replays `first`, then every plan `next` gives.
    private static func replay<Sink: EventSink>(first plan: StepPlan, next: @escaping () throws -> StepPlan?, layout: BudgetLayout,
                                                spec: ReplaySpec, sink: inout Sink, expertUses: @escaping () -> [Int],
                                                recordPrecision: Bool) throws -> (counters: ReplayCounters, precisionLog: [AccessPrecision]) {
        let checked: (StepPlan) throws -> StepPlan = { plan in try requireWeights(spec, plan.hasWeights); return plan }
        var source = SequentialScheduler(try checked(plan), next: { try next().map(checked) })
        return try replay(source: &source, context: plan, layout: layout, spec: spec, sink: &sink,
                          expertUses: expertUses, recordPrecision: recordPrecision)
    }

    /// Builds the strategy from the registry (over `context`, the plan that plan-reading parts are built on) and
    /// replays every step `source` hands out.
    private static func replay<Source: StepSource, Sink: EventSink>(
        source: inout Source, context plan: StepPlan, layout: BudgetLayout, spec: ReplaySpec, sink: inout Sink,
        expertUses: @escaping () -> [Int], recordPrecision: Bool) throws -> (counters: ReplayCounters, precisionLog: [AccessPrecision]) {
        let cost = CostModel(spec)
        let cache = CacheShape(partitionOf: layout.partitionOf, capacities: layout.capacities, expertBytes: spec.model.expertBytes)
        let runner = ReplayRunner(source: source, layers: plan.layers, experts: plan.experts, cost: cost, cache: cache,
                                  budgetBytes: layout.budgetBytes, spec: spec, sink: sink, expertUses: expertUses,
                                  recordPrecision: recordPrecision)
        var context = StrategyContext(plan: plan, cache: cache, spec: spec, cost: cost)
        context.largestWorkingSet = layout.largestWorkingSet
        let counters = try spec.policy.assemble(context, runner)
        sink = runner.sink
        source = runner.source
        return (counters, runner.precisionLog)
    }
}

/// Runs the parts the registry built over every step of a source: the replay behind `Replayer`.
private final class ReplayRunner<Source: StepSource, Sink: EventSink>: StrategyRunner {
    var source: Source
    let layers: Int, experts: Int
    let cost: CostModel
    let cache: CacheShape
    let budgetBytes: Int
    let spec: ReplaySpec
    var sink: Sink
    let expertUses: () -> [Int]
    let recordPrecision: Bool
    var precisionLog: [AccessPrecision] = []

    init(source: Source, layers: Int, experts: Int, cost: CostModel, cache: CacheShape, budgetBytes: Int, spec: ReplaySpec,
         sink: Sink, expertUses: @escaping () -> [Int], recordPrecision: Bool) {
        self.source = source; self.layers = layers; self.experts = experts; self.cost = cost; self.cache = cache
        self.budgetBytes = budgetBytes; self.spec = spec; self.sink = sink; self.expertUses = expertUses
        self.recordPrecision = recordPrecision
    }

    func run<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Place: Placement>(
        _ policy: Policy, _ predictor: Predictor, _ handler: Handler, _ placement: Place) throws -> ReplayCounters {
        let engine = ReplayEngine(spec: spec, layers: layers, experts: experts, cost: cost, cache: cache,
                                  budgetBytes: budgetBytes, parts: (policy, predictor, handler, placement), sink: sink,
                                  recordsPrecision: recordPrecision, uses: expertUses)
        try engine.run(&source)
        sink = engine.sink
        precisionLog = engine.precisionLog
        return engine.finish()
    }
}

/// How the budget is split into partitions, after checking that it can work at all.
struct BudgetLayout {
    let budgetBytes: Int
    /// The most experts any step needs at one layer, over the whole run (streamed or not).
    let largestWorkingSet: Int
    /// An upper bound of the run's simulated seconds at batch 1 (every access a miss copied twice, …).
    let worstSeconds: Double
    let partitionOf: [Int32]
    let capacities: [Int]
    /// GPU memory left for the KV cache beside the resident weights and the expert budget (infinite for
    /// all-resident, the bound that ignores GPU memory).
    let kvRoomBytes: Double

    init(plan: StepPlan, spec: ReplaySpec) throws {
        try self.init(extent: PlanExtent(plan), spec: spec)
    }

    /// - Throws: `ConfigError` when the profiles or options are invalid, the trace has another shape than the
    ///   model, the budget is impossible, or the run could last longer than `Limits.simulatedNanoseconds`.
    init(extent: PlanExtent, spec: ReplaySpec) throws {
        let model = spec.model, layers = extent.layers, experts = extent.experts, largest = extent.largest
        largestWorkingSet = largest.max() ?? 0
        try model.validate()
        try spec.hardware.validate()
        try spec.runtime.validate()
        try spec.placement.validate()
        try spec.prefetch.validate()
        try spec.precision.validate()
        if layers != model.layers {
            throw ConfigError.traceModelMismatch(field: "layers", trace: layers, model: model.layers, model_: model.name)
        }
        if experts != model.experts {
            throw ConfigError.traceModelMismatch(field: "experts", trace: experts, model: model.experts, model_: model.name)
        }
        let cost = CostModel(spec)
        let prefetchesPerStep = spec.policy.prefetches ? layers * experts * (spec.policy.usesLookahead ? spec.prefetch.lookahead : 1) : 0
        let worst = cost.worstCaseSeconds(extent, prefetchesPerStep: prefetchesPerStep)
        worstSeconds = worst
        if !(worst * 1e9 <= Double(Limits.simulatedNanoseconds)) {
            throw ConfigError.invalidValue(field: "model and hardware", value: String(format: "%.3g s", worst),
                                           expected: "settings under which this trace's simulated time stays below \(Limits.simulatedNanoseconds / 1_000_000_000) s (about 146 years): a faster link or GPU, or smaller experts")
        }
        let longestCopy = Link.longestCopy(servers: spec.hardware.copyEngines)
        if spec.hardware.copyEngines > 1 && cost.expertCopy > longestCopy {
            throw ConfigError.invalidValue(field: "model and hardware", value: String(format: "a copy of %.3g s", Double(cost.expertCopy) / 1e9),
                                           expected: "copies of at most \(longestCopy / 1_000_000_000) s on a link with \(spec.hardware.copyEngines) copy engines: a faster link, or smaller experts")
        }
        let expertBytes = model.expertBytes
        budgetBytes = spec.budget.bytes(for: model)
        try spec.hardware.tiers.validate(expertBytes: expertBytes, totalExpertBytes: model.totalExpertBytes, budgetBytes: budgetBytes)
        let tiers = spec.hardware.tiers
        if tiers.hasSSD && tiers.ssdQueueDepth > 1 && cost.ssdRead > Link.longestCopy(servers: tiers.ssdQueueDepth) {
            throw ConfigError.invalidValue(field: "hardware.ssd_bytes_per_s", value: String(format: "a read of %.3g s", Double(cost.ssdRead) / 1e9),
                                           expected: "reads of at most \(Link.longestCopy(servers: tiers.ssdQueueDepth) / 1_000_000_000) s on a drive with queue depth \(tiers.ssdQueueDepth): a faster drive, or smaller experts")
        }
        let flat = layers * experts
        if spec.policy == .allResident {
            partitionOf = Array(repeating: 0, count: flat)
            capacities = [model.totalExpertBytes]
            kvRoomBytes = .infinity
            return
        }
        let available = Int(spec.hardware.gpuMemoryBytes) - model.residentWeightBytes
        if budgetBytes > available {
            throw ConfigError.budgetExceedsGPU(budgetBytes: budgetBytes, availableBytes: max(0, available),
                                               hardware: spec.hardware.name)
        }
        kvRoomBytes = Double(available - budgetBytes)
        // Every scheduler must hold at least one request's KV cache (the sequential plan's largest).
        let longest = Double(extent.peakKVHeld) * model.kvBytesPerToken
        if longest > kvRoomBytes {
            throw ConfigError.kvCacheExceedsGPU(neededBytes: longest, roomBytes: kvRoomBytes, seq: Int(extent.peakKVSeq),
                                                hardware: spec.hardware.name)
        }
        // A layer whose working set does not fit streams its experts through the budget (ReplayCore+Streaming): the
        // only budget refused is one that cannot hold a single expert where one is needed.
        if spec.scope == .perLayer && spec.policy.supportsPerLayerScope {
            let share = budgetBytes / layers
            if share < expertBytes {
                throw ConfigError.budgetTooSmall(budgetBytes: budgetBytes, neededBytes: expertBytes * layers,
                                                 where: "per-layer cache: each layer gets budget / \(layers), less than one expert")
            }
            partitionOf = (0..<flat).map { Int32($0 / experts) }
            capacities = Array(repeating: share, count: layers)
        } else if spec.scope == .shallowFavoring && spec.policy.supportsPerLayerScope {
            // Each layer first gets room for its largest working set (or one expert, when the budget cannot give every
            // layer its set); whole experts of the remainder go to layer l in proportion to L - l (largest
            // remainders first).
            let L = layers
            if budgetBytes < L * expertBytes {
                throw ConfigError.budgetTooSmall(budgetBytes: budgetBytes, neededBytes: L * expertBytes,
                                                 where: "shallow-favoring cache: every layer needs room for one expert")
            }
            let sets = largest.map { max(1, $0) * expertBytes }
            let floor = sets.reduce(0, +) <= budgetBytes ? sets : Array(repeating: expertBytes, count: L)
            let spare = (budgetBytes - floor.reduce(0, +)) / expertBytes
            let weights = (0..<L).map { Double(L - $0) }, total = weights.reduce(0, +)
            var extra = weights.map { Int(Double(spare) * $0 / total) }
            let order = (0..<L).sorted { Double(spare) * weights[$0] / total - Double(extra[$0]) > Double(spare) * weights[$1] / total - Double(extra[$1]) }
            for l in order.prefix(spare - extra.reduce(0, +)) { extra[l] += 1 }
            partitionOf = (0..<flat).map { Int32($0 / experts) }
            capacities = (0..<L).map { floor[$0] + extra[$0] * expertBytes }
        } else {
            if budgetBytes < expertBytes {
                throw ConfigError.budgetTooSmall(budgetBytes: budgetBytes, neededBytes: expertBytes, where: "it cannot hold one expert")
            }
            partitionOf = Array(repeating: 0, count: flat)
            capacities = [budgetBytes]
        }
    }
}

extension ReplayEngine {
    /// The engine of a run under `spec`: an empty expert memory of `cache`'s shape, the prefetch buffer, the tiers
    /// and admission of `spec`, and the strategy's placement made from `uses` (one place for both the one-GPU and
    /// the several-GPU replay). `holds`: with several GPUs, the experts this GPU's map gives it.
    convenience init<Place: Placement>(spec: ReplaySpec, layers: Int, experts: Int, cost: CostModel, cache: CacheShape,
                                       budgetBytes: Int, parts: (Policy, Predictor, Handler, Place), sink: Sink,
                                       recordsPrecision: Bool = false, uses: @escaping () -> [Int],
                                       holds: ((Int32) -> Bool)? = nil) {
        let memory = ExpertMemory(experts: cache.experts, partitionOf: cache.partitionOf, capacities: cache.capacities)
        let buffer = spec.prefetch.bufferShare >= 1 ? Int.max : Int(Double(budgetBytes) * spec.prefetch.bufferShare)
        self.init(layers: layers, experts: experts, cost: cost, policy: parts.0, predictor: parts.1, handler: parts.2,
                  memory: memory, sink: sink, prefetchBufferBytes: buffer, recordsPrecision: recordsPrecision,
                  tiers: spec.hardware.tiers, budgetBytes: budgetBytes, admission: spec.prefetch.admission, holds: holds)
        place(parts.3.place(PlacementBudget(partitionOf: cache.partitionOf, capacities: cache.capacities,
                                            expertBytes: cache.expertBytes, uses: uses)))
    }
}

/// A served run's view of the trace's sequential plan: the facts every served run needs (counted, or read from a
/// plan the caller built anyway), the plan itself only when asked for (several GPUs' maps read it), built at most
/// once, and an empty plan of the trace's shape that the strategy's parts are first built on (a served run rebinds
/// them to its own steps).
private final class SequentialRun {
    let trace: RoutingTrace
    let extent: PlanExtent
    let totals: TraceTotals
    private var built: StepPlan?
    private var counted: [Int]?

    init(_ trace: RoutingTrace, plan: StepPlan? = nil) {
        self.trace = trace
        built = plan
        if let plan {
            extent = PlanExtent(plan)
            totals = TraceTotals(plan)
        } else {
            let facts = SequentialFacts(trace)
            extent = facts.extent
            totals = facts.totals
            counted = facts.uses
        }
    }

    var plan: StepPlan {
        if let built { return built }
        let plan = StepPlan(trace)
        built = plan
        return plan
    }

    /// Accesses per flat expert id, for a placement that learns from them: counted with the facts, or read from the
    /// given plan when a placement first asks.
    lazy var uses: [Int] = counted ?? Replayer.expertUses(plan)

    /// No steps (and no room reserved for any): the trace's layers, experts and whether it records predictions.
    var shape: StepPlan { StepPlan(StepPlanBuilder(trace, reserving: 0)) }
}
