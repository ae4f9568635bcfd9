/// Replays steps under one strategy: its eviction policy, prefetch predictor and miss handler, with an event sink.
///
///     let engine = ReplayEngine(layers: 32, experts: 8, cost: cost, policy: LRUPolicy(…), predictor: NoPrefetch(),
///                               handler: FullCopy(), memory: memory, sink: NoEvents())
///     engine.place(PopularExperts().place(budget))   // optional: experts on the GPU before the first step
///     var source = SequentialScheduler(plan)
///     try engine.run(&source)
///     let counters = engine.finish()
///
/// The steps come from a `StepSource` (the scheduler), asked with the engine's clock at each boundary; the loop
/// itself is `ReplayCore`. State carries over between the runs a source hands out (the chunks of a streaming replay),
/// so their results equal one replay of the whole trace.
public final class ReplayEngine<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Sink: EventSink> {
    /// The replay's state, moved out while it runs (`replay`, and `MultiGPUReplay`'s lockstep over several).
    var core: ReplayCore<Policy, Predictor, Handler, Sink>?
    private let recordsPrecision: Bool
    /// How each access was computed, indexed like the last run's `plan.accessExpert`; filled when `recordsPrecision`.
    public private(set) var precisionLog: [AccessPrecision] = []

    /// - Parameter holds: with several GPUs, the experts this GPU's map gives it: host memory starts with those, and
    ///   the predictor's proposals of the others are dropped.
    public init(layers: Int, experts: Int, cost: CostModel, policy: Policy, predictor: Predictor, handler: Handler,
                memory: ExpertMemory, sink: Sink, prefetchBufferBytes: Int = .max, recordsPrecision: Bool = false,
                tiers: MemoryTiers = MemoryTiers(), budgetBytes: Int = 0, admission: PrefetchAdmission = .none,
                holds: ((Int32) -> Bool)? = nil) {
        let flat = layers * experts
        let held = holds.map { holds in
            let mask = UnsafeMutablePointer<Bool>.allocate(capacity: flat)
            for e in 0..<flat { mask[e] = holds(Int32(e)) }
            return mask
        }
        let book = PrefetchBook(experts: flat, layers: layers, bytesPerCopy: cost.expertBytes)
        let host = tiers.hasSSD ? HostTier(experts: flat, capacityBytes: Int(tiers.hostCapacity(budgetBytes: budgetBytes)),
                                           expertBytes: cost.expertBytes, readDuration: cost.ssdRead,
                                           link: Link(servers: tiers.ssdQueueDepth, latency: cost.ssdLatency,
                                                      reporting: Sink.isEnabled ? .all : .none),
                                           book: book, eviction: tiers.hostEviction,
                                           starts: { held?[Int($0)] ?? true }) : nil
        let pins = UnsafeMutablePointer<Int32>.allocate(capacity: flat)
        pins.initialize(repeating: 0, count: flat)
        core = ReplayCore(policy: policy, predictor: predictor, handler: handler, sink: sink, memory: memory,
                          link: Link(servers: cost.hardware.copyEngines, latency: cost.linkLatency,
                                     reporting: Sink.isEnabled ? .all : Predictor.isEnabled ? .tickets : .none),
                          book: book, held: held.map { UnsafePointer($0) }, host: host, tiered: host != nil,
                          reads: PendingReads(capacity: host == nil ? 1 : experts),
                          pins: pins,
                          cost: cost, prefetchBufferBytes: prefetchBufferBytes,
                          admission: AdmissionState(rule: admission, layers: layers, experts: flat), counters: ReplayCounters(steps: 0),
                          misses: MissList(capacity: experts), heldHits: ExpertList(capacity: experts),
                          awaited: ExpertList(capacity: 4),
                          proposals: ExpertList(capacity: flat),
                          cancelled: ExpertList(capacity: experts), streamed: ExpertList(capacity: experts))
        self.recordsPrecision = recordsPrecision
    }

    deinit {
        guard let core else { return }
        core.held?.deallocate()
        core.pins.deallocate(); core.misses.deallocate(); core.heldHits.deallocate(); core.awaited.deallocate()
        core.proposals.deallocate()
        core.cancelled.deallocate()
        core.streamed.deallocate()
        core.reads.deallocate()
        core.admission.deallocate()
    }

    /// The simulated clock (ns): when the last step replayed so far ended.
    public var now: Int64 { core!.now }
    public var sink: Sink { core!.sink }
    public var policy: Policy { core!.policy }
    public var memory: ExpertMemory { core!.memory }

    /// Admits `experts` before the first step, without copies (a `Placement`'s choice).
    public func place(_ experts: [Int32]) {
        for e in experts {
            core!.memory.admit(e, bytes: core!.cost.expertBytes)
            core!.policy.didPlace(e)
            if Sink.isEnabled { core!.sink.record(.preload(expert: Int(e)), at: 0) }
        }
    }

    /// Replays every step `source` hands out.
    public func run<Source: StepSource>(_ source: inout Source) throws {
        while let run = try source.next(at: now) { replay(run) }
    }

    /// Replays one run of steps: the predictor is pointed at its plan; cache, memory, link and clock carry on.
    public func replay(_ run: StepRun) {
        var core = self.core.take()!  // moved, not copied: a second reference would copy the counters' arrays
        defer { self.core = core }
        core.predictor.rebind(run.plan, following: run.following)
        core.now = max(core.now, run.notBefore)  // idle until the step's requests are there
        let log: UnsafeMutablePointer<AccessPrecision>? = recordsPrecision ? .allocate(capacity: run.plan.accesses) : nil
        log?.initialize(repeating: .full, count: run.plan.accesses)
        core.precisionLog = log
        PlanColumns.with(run.plan) { core.replay($0, steps: run.steps) }
        if let log {
            precisionLog = Array(UnsafeBufferPointer(start: log, count: run.plan.accesses))
            log.deallocate()
            core.precisionLog = nil
        }
    }

    /// Settles what is still open (unused prefetches) and returns the counters of everything replayed.
    public func finish() -> ReplayCounters {
        // Prefetches for a step that never came start if the link reaches them before the end (no later gate will).
        if Predictor.isEnabled { core!.advanceLink(to: core!.now) }
        if Sink.isEnabled && core!.host != nil {  // reads that land by the end, for the timeline
            core!.host!.advance(to: core!.now)
            core!.drainReads()
        }
        let core = self.core!
        var c = core.counters
        if Predictor.isEnabled {
            core.book.finish()
            c.prefetch = core.book.counters
            c.bytesH2D += core.book.bytesPrefetch
            c.predictorSource = core.predictor.source
        }
        c.hits = c.accesses - c.misses
        c.simNanoseconds = core.now - max(0, c.firstStepStart)  // the serving window: from the first step's start
        c.linkBusyNanoseconds = core.link.busyNanoseconds(until: core.now)
        c.peakExpertBytes = core.memory.peakUsed
        if let host = core.host {
            c.tiers = host.counters
            c.tiers!.linkBusyNanoseconds = host.link.busyNanoseconds(until: core.now)
        }
        return c
    }
}

/// What a replay counted; `ReplayResult` turns these into the report's metrics.
public struct ReplayCounters: Sendable, Equatable {
    public var accesses = 0
    public var hits = 0
    public var misses = 0
    public var bytesH2D = 0
    public var stallNanoseconds: Int64 = 0
    public var simNanoseconds: Int64 = 0
    public var linkBusyNanoseconds: Int64 = 0
    public var peakExpertBytes = 0
    public var prefetch = PrefetchCounters()
    public var predictorSource = "none"
    /// Gate weight of the accesses computed with a low-precision version.
    public var lowPrecisionWeight = 0.0
    /// Bytes not copied because a low-precision version or the CPU served a miss instead of a full copy, or it was
    /// skipped.
    public var bytesSaved = 0
    /// Experts computed on the host CPU, and the CPU's busy time.
    public var cpuExperts = 0
    public var cpuNanoseconds: Int64 = 0
    /// Misses the handler chose not to compute.
    public var skippedExperts = 0
    /// The most tokens of context whose KV cache was on the GPU at once.
    public var peakKVTokens: Int64 = 0
    /// What the host tier counted, with three tiers (nil with two).
    public var tiers: TierCounters?
    /// When the first step started (ns; -1 before it): `sim_seconds` counts from there.
    public var firstStepStart: Int64 = -1
    /// Per sequence, the latency of its first step (time to first token).
    public var firstStepLatencies: [Int64] = []
    /// Per output token after its sequence's first, the latency of its step (time per output token).
    public var decodeStepLatencies: [Int64] = []

    init(steps: Int) { decodeStepLatencies.reserveCapacity(steps) }

    /// A step that started at `started` and took `latency` ns (from its own start: waiting for requests to arrive
    /// belongs to no step).
    mutating func recordStep(started: Int64, latency: Int64, firstSteps: Int32, laterOutputs: Int32, kvHeld: Int64) {
        if firstStepStart < 0 { firstStepStart = started }
        peakKVTokens = max(peakKVTokens, kvHeld)
        for _ in 0..<firstSteps { firstStepLatencies.append(latency) }
        for _ in 0..<laterOutputs { decodeStepLatencies.append(latency) }
    }
}
