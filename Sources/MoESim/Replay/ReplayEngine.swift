/// The replay loop: runs every step of a plan through the GPU stream, the link and expert memory under one policy.
///
///     let counters = ReplayEngine(plan: plan, cost: cost, policy: LRUPolicy(…), memory: memory, sink: NoEvents()).run()
///
/// Per layer (SIMULATION.md): the non-expert compute runs, the gate reveals the expert set, hits are computed first,
/// misses are copied in ascending id order (evicting unpinned experts chosen by the policy) and computed as each copy
/// lands; the layer ends when its last expert is done, and the next layer starts then.
///
/// Generic over the policy and the event sink so that both specialise: the loop touches dense arrays only.
/// Invariant: expert memory never exceeds a partition's capacity; time never decreases.
public final class ReplayEngine<Policy: CachePolicy, Sink: EventSink> {
    let plan: StepPlan
    let cost: CostModel
    public private(set) var policy: Policy
    public let memory: ExpertMemory
    public private(set) var sink: Sink
    private var link: Link
    private let pinStamps: UnsafeMutablePointer<Int32>
    private var epoch: Int32 = 0

    public init(plan: StepPlan, cost: CostModel, policy: Policy, memory: ExpertMemory, sink: Sink) {
        self.plan = plan
        self.cost = cost
        self.policy = policy
        self.memory = memory
        self.sink = sink
        link = Link(engines: cost.hardware.copyEngines)
        let flat = plan.layers * plan.experts
        pinStamps = .allocate(capacity: flat)
        pinStamps.initialize(repeating: 0, count: flat)
    }

    deinit { pinStamps.deallocate() }

    public func run() -> ReplayCounters {
        var c = ReplayCounters(steps: plan.steps)
        let L = plan.layers
        let expertBytes = cost.expertBytes
        let copyTime = cost.expertCopy
        // Work on local copies: the optimiser keeps them out of memory and skips class-property access checks.
        var policy = self.policy, link = self.link, sink = self.sink
        let memory = self.memory
        defer { self.policy = policy; self.link = link; self.sink = sink }
        var missLand = [Int64](repeating: 0, count: plan.experts)
        var missTokens = [Int32](repeating: 0, count: plan.experts)
        var missExpert = [Int32](repeating: 0, count: plan.experts)
        var now: Int64 = 0
        if Policy.preloadsAll {
            for e in 0..<Int32(L * plan.experts) {
                memory.admit(e, bytes: expertBytes)
                policy.didInsert(e, at: 0)
            }
        }

        plan.accessExpert.withUnsafeBufferPointer { accessExpert in
        plan.accessTokens.withUnsafeBufferPointer { accessTokens in
        plan.layerStart.withUnsafeBufferPointer { layerStart in
            for s in 0..<plan.steps {
                let stepStart = now
                let nonExpert = cost.nonExpertCompute(tokens: plan.stepTokens[s])
                for l in 0..<L {
                    epoch &+= 1
                    let pins = PinSet(stamps: pinStamps, epoch: epoch)
                    let first = Int(layerStart[s * L + l]), last = Int(layerStart[s * L + l + 1])
                    let gate = now + nonExpert
                    if Sink.isEnabled {
                        sink.record(.layerStart(step: s, layer: l), at: now)
                        sink.record(.gate(step: s, layer: l), at: gate)
                    }
                    var gpu = gate
                    var misses = 0
                    for a in first..<last {
                        let e = accessExpert[a]
                        pinStamps[Int(e)] = epoch
                        if memory.isResident(e) {
                            policy.didAccess(e, at: a)
                            let end = gpu + cost.expertCompute(tokens: accessTokens[a])
                            if Sink.isEnabled {
                                sink.record(.hit(expert: Int(e)), at: gate)
                                sink.record(.computeStart(expert: Int(e)), at: gpu)
                                sink.record(.computeEnd(expert: Int(e)), at: end)
                            }
                            gpu = end
                        } else {
                            let p = memory.partition(of: e)
                            while !memory.fits(expertBytes, in: p) {
                                guard let victim = policy.victim(in: p, pinned: pins) else {
                                    preconditionFailure("budget below the layer working set passed validation")
                                }
                                memory.release(victim, bytes: expertBytes)
                                policy.didEvict(victim)
                                if Sink.isEnabled { sink.record(.evict(expert: Int(victim)), at: gate) }
                            }
                            memory.admit(e, bytes: expertBytes)
                            policy.didInsert(e, at: a)
                            let copy = link.enqueue(duration: copyTime, earliest: gate)
                            if Sink.isEnabled {
                                sink.record(.miss(expert: Int(e)), at: gate)
                                sink.record(.copyStart(expert: Int(e)), at: copy.start)
                                sink.record(.copyEnd(expert: Int(e)), at: copy.end)
                            }
                            missLand[misses] = copy.end
                            missTokens[misses] = accessTokens[a]
                            missExpert[misses] = e
                            misses += 1
                        }
                    }
                    c.accesses += last - first
                    c.misses += misses
                    c.bytesH2D += misses * expertBytes
                    if Policy.computesAfterAllCopies && misses > 0 {
                        var landed = missLand[0]
                        for m in 1..<misses { landed = max(landed, missLand[m]) }
                        if landed > gpu { c.stallNanoseconds += landed - gpu; gpu = landed }
                    }
                    for m in 0..<misses {
                        if missLand[m] > gpu { c.stallNanoseconds += missLand[m] - gpu; gpu = missLand[m] }
                        let end = gpu + cost.expertCompute(tokens: missTokens[m])
                        if Sink.isEnabled {
                            sink.record(.computeStart(expert: Int(missExpert[m])), at: gpu)
                            sink.record(.computeEnd(expert: Int(missExpert[m])), at: end)
                        }
                        gpu = end
                    }
                    if Policy.releasesAfterLayer {
                        for a in first..<last {
                            memory.release(accessExpert[a], bytes: expertBytes)
                            policy.didEvict(accessExpert[a])
                        }
                    }
                    if Sink.isEnabled { sink.record(.layerEnd(step: s, layer: l), at: gpu) }
                    now = gpu
                }
                c.recordStep(s, latency: now - stepStart, plan: plan)
            }
        }
        }
        }
        c.hits = c.accesses - c.misses
        c.simNanoseconds = now
        c.linkBusyNanoseconds = link.busyNanoseconds / Int64(link.engines)
        c.peakExpertBytes = memory.peakUsed
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
    /// Latency of the first step of each sequence (time to first token).
    public var firstStepLatencies: [Int64] = []
    /// Latency of every other decode step (time per output token).
    public var decodeStepLatencies: [Int64] = []

    init(steps: Int) { decodeStepLatencies.reserveCapacity(steps) }

    mutating func recordStep(_ s: Int, latency: Int64, plan: StepPlan) {
        if plan.stepStartsSequence[s] { firstStepLatencies.append(latency) }
        else if plan.stepPhase[s] == .decode { decodeStepLatencies.append(latency) }
    }
}
