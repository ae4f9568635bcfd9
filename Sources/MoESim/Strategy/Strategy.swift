/// The registry: what each strategy is made of (ENGINE.md, "Strategy = Eviction + Predictor + MissHandler +
/// Placement"), in one exhaustive switch. A strategy that forgets a part does not compile.
///
///     let result = try PolicyKind.pregated.assemble(context, replayer)
///
/// `assemble` builds the parts and hands them, with their concrete types, to a `StrategyRunner`: the replay, or a
/// test that checks every part the registry uses (PolicyContractTests).
extension PolicyKind {
    public func assemble<Runner: StrategyRunner>(_ c: StrategyContext, _ runner: Runner) throws -> Runner.Output {
        switch self {
        case .onDemand: try runner.run(OnDemandPolicy(), NoPrefetch(), FullCopy(), EmptyPlacement())
        case .lru: try runner.run(LRUPolicy(cache: c.cache), NoPrefetch(), FullCopy(), EmptyPlacement())
        case .fifo: try runner.run(LRUPolicy(cache: c.cache, touchesOnAccess: false), NoPrefetch(), FullCopy(), EmptyPlacement())
        case .lfu: try runner.run(LFUPolicy(cache: c.cache), NoPrefetch(), FullCopy(), EmptyPlacement())
        case .arc: try runner.run(ARCPolicy(cache: c.cache), NoPrefetch(), FullCopy(), EmptyPlacement())
        case .belady: try runner.run(BeladyPolicy(cache: c.cache, future: FutureIndex(c.plan)), NoPrefetch(), FullCopy(), EmptyPlacement())
        case .allResident: try runner.run(AllResidentPolicy(), NoPrefetch(), FullCopy(), EveryExpert())
        case .prefetchAll: try prefetching(AllNextLayerPredictor(layers: c.plan.layers, experts: c.plan.experts), c, runner)
        case .pregated: try prefetching(ExactPredictor(plan: c.plan), c, runner)
        case .oraclePrefetch: try prefetching(OraclePredictor(plan: c.plan, lookahead: c.spec.prefetch.lookahead), c, runner)
        case .crossLayerGate:
            if c.plan.hasPredictions { try prefetching(RecordedPredictor(plan: c.plan), c, runner) }
            else { try prefetching(ModelledCrossLayerPredictor(plan: c.plan, accuracy: c.spec.prefetch.accuracy, seed: c.spec.prefetch.seed), c, runner) }
        case .affinity: try prefetching(AffinityPredictor(layers: c.plan.layers, experts: c.plan.experts), c, runner)
        case .moeInfinity:
            try runner.run(LFUPolicy(cache: c.cache),
                           MoEInfinityPredictor(layers: c.plan.layers, experts: c.plan.experts,
                                                limit: min(c.spec.model.topK, c.cache.capacities.reduce(0, +) / c.cache.expertBytes)),
                           FullCopy(), EmptyPlacement())
        case .mixedPrecision:
            try runner.run(LRUPolicy(cache: c.cache), NoPrefetch(), LowPrecisionCopy(c.spec.precision, model: c.spec.model), EmptyPlacement())
        case .cpuFallback: try runner.run(LRUPolicy(cache: c.cache), NoPrefetch(), HostCompute(cost: c.cost), PopularExperts())
        case .skip:
            try runner.run(LRUPolicy(cache: c.cache), NoPrefetch(), SkipBelow(threshold: Float(c.spec.precision.skipThreshold), inner: FullCopy()),
                           EmptyPlacement())
        case .mixedSkip:
            try runner.run(LRUPolicy(cache: c.cache), NoPrefetch(),
                           SkipBelow(threshold: Float(c.spec.precision.skipThreshold),
                                     inner: LowPrecisionCopy(c.spec.precision, model: c.spec.model)), EmptyPlacement())
        case .staticFrequency:
            try runner.run(KeepPlaced(experts: c.cache.experts, inner: LRUPolicy(cache: c.cache)), NoPrefetch(),
                           HostLayers(cpuLayers: 0, experts: c.plan.experts, rest: c.spec.placement.rest),
                           PopularExperts(reserveBytes: c.placementReserve))
        case .nCpuMoe:
            try runner.run(KeepPlaced(experts: c.cache.experts, inner: LRUPolicy(cache: c.cache)), NoPrefetch(),
                           HostLayers(cpuLayers: c.cpuLayers, experts: c.plan.experts, rest: c.spec.placement.rest),
                           LayerPlacement(cpuLayers: c.cpuLayers, experts: c.plan.experts, reserveBytes: c.placementReserve))
        }
    }

    /// A prefetching strategy: its predictor over the cache its options choose (`prefetch.eviction`).
    private func prefetching<F: PrefetchPredictor, Runner: StrategyRunner>(_ predictor: F, _ c: StrategyContext,
                                                                           _ runner: Runner) throws -> Runner.Output {
        switch c.spec.prefetch.eviction {
        case .lru: try runner.run(LRUPolicy(cache: c.cache), predictor, FullCopy(), EmptyPlacement())
        case .arc: try runner.run(ARCPolicy(cache: c.cache), predictor, FullCopy(), EmptyPlacement())
        }
    }
}

/// What a strategy's parts are built from: the first plan (the whole trace, or a streaming replay's first chunk),
/// the cache's partitions, the run's settings and its costs.
public struct StrategyContext {
    public let plan: StepPlan
    public let cache: CacheShape
    public let spec: ReplaySpec
    public let cost: CostModel
    /// The most experts any step of the run needs at one layer (the first plan's, unless the replay knows the
    /// whole run's: a streamed replay's first plan is one chunk).
    public var largestWorkingSet: Int

    public init(plan: StepPlan, cache: CacheShape, spec: ReplaySpec, cost: CostModel) {
        self.plan = plan; self.cache = cache; self.spec = spec; self.cost = cost
        largestWorkingSet = plan.largestWorkingSet().max() ?? 0
    }
}

extension StrategyContext {
    /// `n-cpu-moe`'s layers on the host CPU.
    var cpuLayers: Int { spec.placement.cpuLayers(model: spec.model, budgetBytes: spec.budget.bytes(for: spec.model)) }

    /// Room a static placement leaves free, where its experts do not all fit (`PlacementBudget.room`), for the
    /// copies of those it did not place when misses are copied on demand: the run's largest working set of a layer,
    /// so that no layer streams through memory (which would free placed experts).
    var placementReserve: Int { spec.placement.rest == .demand ? largestWorkingSet * cache.expertBytes : 0 }
}

/// Receives a strategy's parts with their concrete types, so that the replay loop specialises for them.
public protocol StrategyRunner {
    associatedtype Output
    func run<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Place: Placement>(
        _ policy: Policy, _ predictor: Predictor, _ handler: Handler, _ placement: Place) throws -> Output
}
