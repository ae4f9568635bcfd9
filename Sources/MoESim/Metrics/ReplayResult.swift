/// One replay's inputs and counters, and the report metrics derived from them (docs/metrics.md).
public struct ReplayResult: Sendable {
    public let traceName: String
    public let spec: ReplaySpec
    public let budgetBytes: Int
    public let tokens: Int
    public let steps: Int
    public let missingCells: Int
    public let counters: ReplayCounters
    /// Gate weight of all accesses (nil when the trace has no weights).
    public let routedWeight: Double?
    /// How each access was computed; empty unless the replay was asked to record it.
    public var precisionLog: [AccessPrecision] = []
    /// Output error against fp32, when numerics ran.
    public var numerics: NumericsSummary?
    /// Request latencies and throughput, when the run served requests (a scheduler other than `sequential`).
    public var serving: ServingSummary?
    /// For a placement learnt on a training part (`static-frequency`): that part, replayed with the same placement;
    /// this result is the rest.
    public var trainPart: TrainPart?
    /// With several GPUs: the placement's load imbalance, the all-to-all traffic and the per-GPU spread.
    public var multiGPU: MultiGPUSummary?

    init(traceName: String, spec: ReplaySpec, budgetBytes: Int, plan: StepPlan, counters: ReplayCounters) {
        self.init(traceName: traceName, spec: spec, budgetBytes: budgetBytes, totals: TraceTotals(plan), counters: counters)
    }

    init(traceName: String, spec: ReplaySpec, budgetBytes: Int, totals: TraceTotals, counters: ReplayCounters) {
        self.traceName = traceName
        self.spec = spec
        self.budgetBytes = budgetBytes
        tokens = totals.tokens
        steps = totals.steps
        missingCells = totals.missingCells
        self.counters = counters
        routedWeight = totals.weighted ? totals.weight : nil
    }

    /// Σ gate weight computed in low precision / Σ gate weight of every access.
    public var lowPrecisionShare: Double? {
        guard let routedWeight, routedWeight > 0 else { return nil }
        return counters.lowPrecisionWeight / routedWeight
    }
    public var cpuSeconds: Double { Double(counters.cpuNanoseconds) * 1e-9 }

    public var simSeconds: Double { Double(counters.simNanoseconds) * 1e-9 }
    public var hitRate: Double? { counters.accesses > 0 ? Double(counters.hits) / Double(counters.accesses) : nil }
    public var tokensPerSecond: Double? { simSeconds > 0 ? Double(tokens) / simSeconds : nil }
    /// Requests in an average step (1 for sequential replay).
    /// The most KV cache held at once (docs/serving.md, "Attention and the KV cache").
    public var peakKVBytes: Int { Int((Double(counters.peakKVTokens) * spec.model.kvBytesPerToken).rounded()) }
    public var meanBatch: Double? { serving?.meanBatch ?? (steps > 0 ? 1 : nil) }
    /// Distinct experts per layer per step: accesses / (steps · layers).
    public var distinctExpertsPerLayer: Double? {
        steps > 0 ? Double(counters.accesses) / Double(steps * spec.model.layers) : nil
    }
    public var budgetExperts: Int { budgetBytes / spec.model.expertBytes }
    public var ttftSeconds: Double? { mean(counters.firstStepLatencies) }
    public var ttftP99Seconds: Double? { percentile(counters.firstStepLatencies, 0.99) }
    public var tpotMeanSeconds: Double? { mean(counters.decodeStepLatencies) }
    public var tpotP50Seconds: Double? { percentile(counters.decodeStepLatencies, 0.50) }
    public var tpotP99Seconds: Double? { percentile(counters.decodeStepLatencies, 0.99) }
    public var stallSeconds: Double { Double(counters.stallNanoseconds) * 1e-9 }
    /// Whether the run had three tiers (an SSD below a host tier of limited size).
    public var hasTiers: Bool { counters.tiers != nil }
    /// The report columns this run fills beyond the common ones.
    public var columnGroups: ColumnGroups { ColumnGroups(spec) }
    /// host_hits / (host_hits + host_misses + host_late): the share of experts asked of host memory found there.
    public var hostHitRate: Double? {
        guard let t = counters.tiers, t.hits + t.misses + t.late > 0 else { return nil }
        return Double(t.hits) / Double(t.hits + t.misses + t.late)
    }
    public var ssdBusyFraction: Double? {
        guard let t = counters.tiers, counters.simNanoseconds > 0 else { return nil }
        return Double(t.linkBusyNanoseconds) / Double(counters.simNanoseconds)
    }
    public var linkBusyFraction: Double? {
        counters.simNanoseconds > 0 ? Double(counters.linkBusyNanoseconds) / Double(counters.simNanoseconds) : nil
    }

    /// Σ|predicted ∩ actual| / Σ|predicted| over the layers predictions were made for; nil without predictions.
    public var predPrecision: Double? {
        let p = counters.prefetch
        return p.predicted > 0 ? Double(p.predictedCorrect) / Double(p.predicted) : nil
    }
    /// Σ|predicted ∩ actual| / Σ|actual| over the same layers.
    public var predRecall: Double? {
        let p = counters.prefetch
        return p.actual > 0 ? Double(p.predictedCorrect) / Double(p.actual) : nil
    }

    private func mean(_ values: [Int64]) -> Double? {
        values.isEmpty ? nil : Double(values.reduce(0, +)) / Double(values.count) * 1e-9
    }

    private func percentile(_ values: [Int64], _ p: Double) -> Double? {
        nearestRankPercentile(values, p).map { Double($0) * 1e-9 }
    }
}

/// What a report needs to know of the whole trace; a streaming replay adds it up chunk by chunk.
struct TraceTotals {
    var tokens = 0, steps = 0, missingCells = 0
    var weight = 0.0
    var weighted = true

    init() {}
    init(_ plan: StepPlan) { add(plan) }

    /// The totals of the steps a counting builder formed (`SequentialFacts`): as `add` reads them from its plan.
    init(counted builder: StepPlanBuilder) {
        tokens = builder.tokens; steps = builder.stepTokens.count; missingCells = builder.missingCells
        weight = builder.totalWeight
        weighted = builder.sumsWeights && builder.accessCount > 0
    }

    mutating func add(_ plan: StepPlan) {
        tokens += plan.tokens; steps += plan.steps; missingCells += plan.missingCells
        weight += plan.totalWeight
        weighted = weighted && plan.recordsWeights
    }
}

/// Nearest-rank percentile: the smallest value with at least a share `p` of values at or below it; nil when empty.
func nearestRankPercentile<T: Comparable>(_ values: [T], _ p: Double) -> T? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    return sorted[max(1, Int((p * Double(sorted.count)).rounded(.up))) - 1]
}

/// The training part of a split replay: its share of the sequences, and how the placement it taught did on it.
public struct TrainPart: Sendable, Equatable {
    public let share: Double
    public let tokens: Int
    public let hitRate: Double?
    public let tokensPerSecond: Double?
}
