import Testing
@testable import MoESim

/// The invariants of SIMULATION.md as properties over many seeds and budgets.
@Suite struct ReplayInvariantTests {
    static let seeds: [UInt64] = propertySeeds(12)
    static let shape = (layers: 4, experts: 16, topK: 2)

    static func trace(_ seed: UInt64) -> RoutingTrace {
        zipfTrace(seed: seed, layers: shape.layers, experts: shape.experts, topK: shape.topK, tokens: 120,
                  prefill: seed % 2 == 0 ? 0 : 6)
    }
    static let model = tinyModel(layers: shape.layers, experts: shape.experts, topK: shape.topK)

    /// At least `slots`, and never below what the trace's largest step-layer needs.
    static func budget(_ trace: RoutingTrace, _ slots: Int) -> Budget {
        .experts(max(slots, StepPlan(trace).largestWorkingSet().max()!))
    }

    @Test(arguments: seeds)
    func memoryNeverExceedsTheBudget(seed: UInt64) throws {
        let trace = Self.trace(seed)
        let needed = StepPlan(trace).largestWorkingSet().max()!
        for policy in PolicyKind.allCases where policy != .allResident {
            for slots in [needed, needed + 3, 20, 40] {
                let (result, events) = try replayLogged(trace, model: Self.model, policy: policy, budget: .experts(slots))
                // Resident or in flight, rebuilt from the log: admitted by a miss, a prefetch or the initial
                // placement, gone on evict/cancel (a miss the CPU computes logs no .miss: nothing is admitted).
                var resident = Set<Int>(), peak = 0
                for e in events {
                    switch e.event {
                    case let .miss(x), let .prefetch(x), let .preload(x): resident.insert(x)
                    case let .evict(x), let .cancel(x): resident.remove(x)
                    case .layerEnd where policy == .onDemand: resident.removeAll()
                    default: break
                    }
                    peak = max(peak, resident.count)
                    // Low-precision experts are smaller, so mixed-precision and mixed-skip may hold more than `slots`.
                    if !policy.copiesLowPrecision {
                        #expect(resident.count <= slots, "\(policy) seed \(seed): \(resident.count) experts held with a budget of \(slots)")
                    }
                }
                #expect(result.counters.peakExpertBytes <= slots * Self.model.expertBytes)
                if !policy.copiesLowPrecision { #expect(result.counters.peakExpertBytes == peak * Self.model.expertBytes) }
            }
        }
    }

    /// On one copy engine copies never overlap, and each layer starts when the previous one ends, as the event log
    /// says (that the engine's clock never goes back is `EngineClockTests`, on the engine's own order of events).
    @Test(arguments: seeds)
    func copiesOnOneEngineNeverOverlapAndLayersRunBackToBack(seed: UInt64) throws {
        let trace = Self.trace(seed)
        for policy in PolicyKind.allCases {
            let (_, events) = try replayLogged(trace, model: Self.model, policy: policy, budget: Self.budget(trace, 8))
            var linkFree = SimTime.zero, layerEnd = SimTime.zero
            for e in events {
                switch e.event {
                case .copyStart: #expect(e.time >= linkFree, "a copy started before the previous one landed")
                case .copyEnd: linkFree = e.time
                case .layerStart: #expect(e.time == layerEnd, "a layer started before the previous one ended")
                case .layerEnd: layerEnd = e.time
                default: break
                }
            }
        }
    }

    /// Every report column stays within what its kind allows (`Metric.Kind`): shares in [0, 1], cosines in
    /// [-1, 1], times, rates, ratios, counts and bytes finite and ≥ 0, text not numeric-checked; for every strategy
    /// on 1, 2 and 4 copy engines, batch 1 and served in continuous batches with Poisson arrivals. (`link_busy_fraction`
    /// once reached 1.063: a copy's whole duration counted when it started, even past the end of the run.)
    @Test(arguments: seeds)
    func everyColumnStaysWithinItsBounds(seed: UInt64) throws {
        let trace = Self.trace(seed), plan = StepPlan(trace)
        var served = ServingOptions()
        served.scheduler = .continuous
        served.maxSeqs = 2
        served.arrivals = .poisson(rate: 2_000, seed: seed)
        served.slo = ServiceLevel(ttftSeconds: 0.002, tpotSeconds: 0.001)
        for engines in [1, 2, 4] {
            for policy in PolicyKind.allCases {
                for serving in [ServingOptions(), served] {
                    var spec = ReplaySpec(model: Self.model, hardware: tinyHardware(engines: engines), policy: policy,
                                          budget: Self.budget(trace, 6), serving: serving)
                    spec.precision.skipThreshold = 0.2
                    let r = try Replayer.replay(trace: trace, plan: plan, spec: spec)
                    for metric in Metric.allCases {
                        let cell = metric.cell(r), what = "\(metric.rawValue) = \(cell): \(policy), \(engines) engines, \(serving.scheduler)"
                        guard metric.kind != .text, !cell.isEmpty else { continue }
                        let value = try #require(Double(cell), "\(what) is not a number")
                        #expect(value.isFinite, "\(what)")
                        switch metric.kind {
                        case .fraction: #expect(value >= 0 && value <= 1, "\(what)")
                        case .cosine: #expect(value >= -1 && value <= 1, "\(what)")
                        case .count, .bytes: #expect(value >= 0 && value == value.rounded(), "\(what)")
                        case .seconds, .perSecond, .ratio: #expect(value >= 0, "\(what)")
                        case .text: break
                        }
                    }
                }
            }
        }
    }

    /// Recording a timeline changes nothing: every report column is the same with and without an event log, for
    /// every prefetching strategy on 1 and 2 copy engines (a replay without one skips advancing the link at a layer's
    /// end when nothing queued is the layer's own; the next gate starts the same copies at the same times).
    @Test(arguments: seeds)
    func anEventLogChangesNoFigure(seed: UInt64) throws {
        let trace = Self.trace(seed)
        for engines in [1, 2] {
            for policy in PolicyKind.allCases where policy.prefetches {
                let hardware = tinyHardware(engines: engines), budget = Self.budget(trace, 7)
                let plain = try replay(trace, model: Self.model, hardware: hardware, policy: policy, budget: budget)
                let (logged, _) = try replayLogged(trace, model: Self.model, hardware: hardware, policy: policy, budget: budget)
                #expect(Metric.row(plain) == Metric.row(logged), "\(policy), \(engines) engines, seed \(seed)")
            }
        }
    }

    @Test(arguments: seeds)
    func rerunsAreByteIdentical(seed: UInt64) throws {
        for policy in PolicyKind.allCases {
            let budget = Self.budget(Self.trace(seed), 10)
            let a = try replay(Self.trace(seed), model: Self.model, policy: policy, budget: budget)
            let b = try replay(Self.trace(seed), model: Self.model, policy: policy, budget: budget)
            #expect(CSVFile.line(Metric.row(a)) == CSVFile.line(Metric.row(b)))
        }
    }

    @Test(arguments: seeds)
    func lruNeverBeatsBeladyAndBothAreMonotoneInBudget(seed: UInt64) throws {
        let trace = Self.trace(seed)
        let needed = StepPlan(trace).largestWorkingSet().max()!
        var previous: (lru: Int, belady: Int) = (-1, -1)
        for slots in needed...(Self.shape.layers * Self.shape.experts) {
            let lru = try replay(trace, model: Self.model, policy: .lru, budget: .experts(slots)).counters.hits
            let belady = try replay(trace, model: Self.model, policy: .belady, budget: .experts(slots)).counters.hits
            let arc = try replay(trace, model: Self.model, policy: .arc, budget: .experts(slots)).counters.hits
            #expect(lru <= belady, "seed \(seed), \(slots) slots: LRU \(lru) hits > Belady \(belady)")
            #expect(arc <= belady, "seed \(seed), \(slots) slots: ARC \(arc) hits > Belady \(belady)")
            #expect(lru >= previous.lru, "seed \(seed): LRU hits fell from \(previous.lru) to \(lru) at \(slots) slots")
            #expect(belady >= previous.belady, "seed \(seed): Belady hits fell at \(slots) slots")
            previous = (lru, belady)
        }
    }

    @Test(arguments: seeds)
    func bytesCopiedAreTheSumOverCopies(seed: UInt64) throws {
        let trace = Self.trace(seed)
        for policy in PolicyKind.allCases {
            let (r, events) = try replayLogged(trace, model: Self.model, policy: policy, budget: Self.budget(trace, 9))
            let copies = events.filter { if case .copyStart = $0.event { true } else { false } }.count
            // Every miss is a full copy, a smaller low-precision copy, a CPU computation or a skip: what the last
            // three did not copy is `bytes_saved`.
            let full = Self.model.expertBytes
            #expect(r.counters.bytesH2D + r.counters.bytesSaved
                    == (copies + r.counters.cpuExperts + r.counters.skippedExperts) * full)
            if !policy.prefetches { #expect(r.counters.bytesH2D + r.counters.bytesSaved == r.counters.misses * full) }
            #expect(r.counters.prefetch.bytesPrefetch <= r.counters.bytesH2D)
            // Hits and misses as the log saw them: a hit event per hit; a miss event per miss, except those the CPU
            // computed (a CPU event) or skipped (no event).
            let hitEvents = events.filter { if case .hit = $0.event { true } else { false } }.count
            let missEvents = events.filter { if case .miss = $0.event { true } else { false } }.count
            #expect(r.counters.hits == hitEvents, "\(policy) seed \(seed)")
            #expect(r.counters.misses == missEvents + r.counters.cpuExperts + r.counters.skippedExperts, "\(policy) seed \(seed)")
        }
    }

    @Test(arguments: seeds)
    func everyPrefetchEndsExactlyOnce(seed: UInt64) throws {
        let trace = Self.trace(seed)
        let needed = StepPlan(trace).largestWorkingSet().max()!
        for policy in PolicyKind.allCases where policy.prefetches {
            for slots in [needed, needed + 4, 24, 64] {
                for (hw, options) in [(tinyHardware(), PrefetchOptions()), (Self.fastLink, PrefetchOptions(eviction: .arc)),
                                      (Self.slowLink, PrefetchOptions(bufferShare: 0.2))] {
                    let (r, events) = try replayLogged(trace, model: Self.model, hardware: hw, policy: policy,
                                                       budget: .experts(slots), prefetch: options)
                    let p = r.counters.prefetch
                    #expect(p.useful + p.late + p.wasted + p.cancelled == p.issued, "\(policy) seed \(seed) slots \(slots)")
                    #expect(p.issued == events.filter { if case .prefetch = $0.event { true } else { false } }.count)
                    #expect(p.bytesWasted == p.wasted * Self.model.expertBytes)
                    #expect(p.bytesPrefetch <= p.issued * Self.model.expertBytes)
                }
            }
        }
    }

    @Test(arguments: seeds)
    func prefetchesNeverHoldMoreThanTheirBuffer(seed: UInt64) throws {
        let trace = Self.trace(seed)
        let slots = max(20, StepPlan(trace).largestWorkingSet().max()!)
        for policy in [PolicyKind.prefetchAll, .crossLayerGate, .affinity] {
            for share in [0.1, 0.25, 0.5] {
                let (_, events) = try replayLogged(trace, model: Self.model, hardware: Self.slowLink, policy: policy,
                                                   budget: .experts(slots), prefetch: PrefetchOptions(bufferShare: share))
                // Held: prefetched and not yet asked for, evicted or cancelled.
                var held = Set<Int>()
                for e in events {
                    switch e.event {
                    case let .prefetch(x): held.insert(x)
                    case let .hit(x), let .miss(x), let .evict(x), let .cancel(x): held.remove(x)
                    default: break
                    }
                    #expect(Double(held.count) <= Double(slots) * share, "\(policy) holds \(held.count) of \(slots)")
                }
            }
        }
    }

    @Test func shallowFavoringSharesDecreaseWithDepth() throws {
        let trace = Self.trace(2)  // decode only: a layer needs top-k = 2 experts at once
        let plan = StepPlan(trace)
        for slots in [8, 13, 30, 64] {
            let spec = ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: .lru, scope: .shallowFavoring,
                                  budget: .experts(slots))
            let layout = try BudgetLayout(plan: plan, spec: spec)
            let experts = layout.capacities.map { $0 / Self.model.expertBytes }
            #expect(experts.reduce(0, +) == slots)
            #expect(experts.allSatisfy { $0 >= 2 })
            #expect(zip(experts, experts.dropFirst()).allSatisfy { $0 >= $1 }, "\(experts)")
            _ = try replay(trace, model: Self.model, policy: .pregated, budget: .experts(slots), scope: .shallowFavoring)
        }
        // Too little for every layer's working set: each layer gets one expert first (its sets stream), the rest
        // still favours shallow layers; less than one expert a layer is refused.
        let tight = try BudgetLayout(plan: plan, spec: ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: .lru,
                                                                  scope: .shallowFavoring, budget: .experts(7)))
        let shares = tight.capacities.map { $0 / Self.model.expertBytes }
        #expect(shares.reduce(0, +) == 7 && shares.allSatisfy { $0 >= 1 } && zip(shares, shares.dropFirst()).allSatisfy { $0 >= $1 })
        #expect(throws: ConfigError.self) {
            try BudgetLayout(plan: plan, spec: ReplaySpec(model: Self.model, hardware: tinyHardware(), policy: .lru,
                                                          scope: .shallowFavoring, budget: .experts(3)))
        }
    }

    /// Copies 100x faster than the tiny GPU's compute, so a prefetch one layer ahead always lands in time.
    static let fastLink: HardwareProfile = { var h = tinyHardware(); h.linkBytesPerSecond = 1e12; h.linkLatencySeconds = 0; return h }()
    /// A link so slow that prefetches queue up and get cancelled.
    static let slowLink: HardwareProfile = { var h = tinyHardware(); h.linkBytesPerSecond = 1e7; return h }()

    @Test(arguments: seeds)
    func oraclePrefetchHidesEveryCopyOnAnInfinitelyFastLink(seed: UInt64) throws {
        var instant = tinyHardware()
        instant.linkBytesPerSecond = 1e30
        instant.linkLatencySeconds = 0
        let trace = Self.trace(seed)
        for lookahead in [1, 2, 3] {
            let r = try replay(trace, model: Self.model, hardware: instant, policy: .oraclePrefetch, budget: Self.budget(trace, 10),
                               prefetch: PrefetchOptions(lookahead: lookahead))
            #expect(r.counters.stallNanoseconds == 0)
            #expect(r.counters.prefetch.late == 0 && r.counters.prefetch.useful > 0)
        }
        // On a fast (not infinite) link the oracle, which also sees the next step's first layer from the last one,
        // never waits for a prefetch.
        let fast = try replay(trace, model: Self.model, hardware: Self.fastLink, policy: .oraclePrefetch, budget: Self.budget(trace, 12))
        let lru = try replay(trace, model: Self.model, hardware: Self.fastLink, policy: .lru, budget: Self.budget(trace, 12))
        #expect(fast.counters.prefetch.late == 0)
        #expect(fast.counters.stallNanoseconds < lru.counters.stallNanoseconds)
        // Pregated cannot see the next token's first layer: it stalls more.
        let pregated = try replay(trace, model: Self.model, hardware: Self.fastLink, policy: .pregated, budget: Self.budget(trace, 12))
        #expect(pregated.counters.stallNanoseconds > fast.counters.stallNanoseconds)
    }

    @Test(arguments: seeds)
    func aPerfectCrossLayerGateIsThePreGate(seed: UInt64) throws {
        // Neither sees across the step boundary; both know the next layer exactly.
        let trace = Self.trace(seed)
        for slots in [10, 20] {
            let budget = Self.budget(trace, slots)
            let oracle = try replay(trace, model: Self.model, policy: .pregated, budget: budget)
            let gate = try replay(trace, model: Self.model, policy: .crossLayerGate, budget: budget,
                                  prefetch: PrefetchOptions(accuracy: 1.0, seed: seed))
            #expect(gate.counters.simNanoseconds == oracle.counters.simNanoseconds)
            #expect(gate.counters.hits == oracle.counters.hits)
            #expect(gate.counters.prefetch == oracle.counters.prefetch)
            #expect(gate.predPrecision == 1.0 && gate.predRecall == 1.0)
            let noisy = try replay(trace, model: Self.model, policy: .crossLayerGate, budget: budget,
                                   prefetch: PrefetchOptions(accuracy: 0.7, seed: seed))
            #expect(abs(noisy.predRecall! - 0.7) < 0.1, "recall \(noisy.predRecall!) for accuracy 0.7")
        }
    }

    @Test(arguments: seeds)
    func pregatedIsNeverSlowerThanLRUWhenPrefetchDoesNotThrash(seed: UInt64) throws {
        // Budgets that hold at least half of all experts: exact prefetches only bring forward copies LRU makes anyway.
        let trace = Self.trace(seed)
        let total = Self.shape.layers * Self.shape.experts
        for slots in [total / 2, 3 * total / 4, total] {
            for hw in [tinyHardware(), Self.fastLink] {
                let lru = try replay(trace, model: Self.model, hardware: hw, policy: .lru, budget: .experts(slots))
                let pre = try replay(trace, model: Self.model, hardware: hw, policy: .pregated, budget: .experts(slots))
                #expect(pre.counters.simNanoseconds <= lru.counters.simNanoseconds, "seed \(seed), \(slots) slots")
                #expect(pre.counters.prefetch.wasted == 0 && pre.predPrecision == 1.0)
            }
        }
    }

    @Test(arguments: seeds)
    func accessesFollowTheAccountingUnit(seed: UInt64) throws {
        // An access is one (step, layer, expert) of the step's expert set; count it independently of the plan.
        let trace = Self.trace(seed)
        var expected = 0, t = 0
        let L = trace.header.layers
        while t < trace.tokenCount {
            var end = t + 1
            if trace.phase[t] == .prefill {
                while end < trace.tokenCount && trace.phase[end] == .prefill && trace.seq[end] == trace.seq[t] { end += 1 }
            }
            for l in 0..<L {
                expected += Set((t..<end).flatMap { trace.expertIDs(token: $0, layer: l).map(Array.init) ?? [] }).count
            }
            t = end
        }
        let r = try replay(trace, model: Self.model, policy: .lru, budget: Self.budget(trace, 12))
        #expect(r.counters.accesses == expected)
    }

    @Test(arguments: seeds)
    func cachesConvergeToAllResidentWhenEverythingFits(seed: UInt64) throws {
        // A first prefill step touches every expert; afterwards every caching policy must run like all-resident.
        let E = Self.shape.experts, L = Self.shape.layers
        let warmup: [[[Int]?]] = (0..<(E / 2)).map { i in (0..<L).map { _ in [2 * i, 2 * i + 1] } }
        let rest = Self.trace(seed)
        var cells = warmup
        for t in 0..<rest.tokenCount {
            cells.append((0..<L).map { l in rest.expertIDs(token: t, layer: l).map { $0.map(Int.init) } })
        }
        let phases = Array(repeating: Phase.prefill, count: warmup.count) + Array(repeating: .decode, count: rest.tokenCount)
        let trace = makeTrace(cells, experts: E, topK: 2, phases: phases)
        let bound = try replay(trace, model: Self.model, policy: .allResident, budget: .share(1))
        // cpu-fallback and the static placements place experts before the first step (no compulsory misses); the
        // strategies that decide by gate weight need weights.
        for policy in PolicyKind.allCases where ![.onDemand, .allResident, .cpuFallback].contains(policy) && !policy.readsGateWeights
                                               && !policy.placesStatically {
            let r = try replay(trace, model: Self.model, policy: policy, budget: .share(1))
            #expect(r.counters.misses == E * L, "\(policy): only compulsory misses")
            #expect(r.counters.decodeStepLatencies == bound.counters.decodeStepLatencies, "\(policy) after warm-up")
        }
    }

    @Test func perLayerLRUKeepsEachLayerWithinItsShare() throws {
        for seed in Self.seeds where seed % 2 == 0 {  // decode-only traces: one step never needs more than top-k
            let trace = Self.trace(seed)
            let slots = 3 * Self.shape.layers
            let (r, events) = try replayLogged(trace, model: Self.model, policy: .lru, budget: .experts(slots), scope: .perLayer)
            var perLayer = [Int](repeating: 0, count: Self.shape.layers)
            for e in events {
                if case let .miss(x) = e.event { perLayer[x / Self.shape.experts] += 1 }
                if case let .evict(x) = e.event { perLayer[x / Self.shape.experts] -= 1 }
                #expect(perLayer.allSatisfy { $0 <= 3 })
            }
            let global = try replay(trace, model: Self.model, policy: .lru, budget: .experts(slots))
            #expect(r.counters.accesses == global.counters.accesses)
        }
    }
}
