/// The replay loop: runs every step of a plan through the GPU stream, the link and expert memory under one cache
/// policy and one prefetch predictor.
///
///     let engine = ReplayEngine(plan: plan, cost: cost, policy: LRUPolicy(…), predictor: NoPrefetch(),
///                               memory: memory, sink: NoEvents())
///     engine.replay(plan)   // then each further chunk of a streaming replay
///     let counters = engine.finish()
///
/// Per layer (SIMULATION.md): the non-expert compute runs; the gate reveals the expert set, which is pinned; hits are computed
/// first, misses are copied in ascending id order (evicting unpinned experts chosen by the policy) and computed as
/// each copy lands; then the predictor's proposals are queued as prefetch copies behind the demand copies; the layer
/// ends when its last expert is done, prefetches for it that never started are cancelled, and the next layer starts.
/// A miss may instead be served in low precision or on the host CPU (`MissFallback`). A streaming replay feeds the
/// engine one chunk of steps at a time (`replay(_:)`, then `finish()`); its state carries over between chunks.
///
/// Generic over the policy, the predictor and the event sink so that all three specialise: the loop touches dense
/// arrays only, and `NoPrefetch` and `NoEvents` compile away.
/// Invariant: expert memory never exceeds a partition's capacity; time never decreases.
public final class ReplayEngine<Policy: CachePolicy, Predictor: PrefetchPredictor, Sink: EventSink> {
    /// The steps being replayed: the whole trace, or the current chunk of a streaming replay.
    private(set) var plan: StepPlan
    let cost: CostModel
    public private(set) var policy: Policy
    public private(set) var predictor: Predictor
    public let memory: ExpertMemory
    public private(set) var sink: Sink
    private let link: Link
    private let pinStamps: UnsafeMutablePointer<Int32>
    private let prefetch: PrefetchBook
    private var epoch: Int32 = 0

    /// Bytes that prefetched experts not yet used may hold at once.
    private let prefetchBufferBytes: Int
    private let fallback: MissFallback
    /// Experts placed on the GPU before the first step (Fiddler's popularity placement).
    private let initialResident: [Int32]
    private let recordsPrecision: Bool
    /// How each access was computed, indexed like `plan.accessExpert`; filled when `recordsPrecision`.
    public private(set) var precisionLog: [AccessPrecision] = []
    // State carried from one chunk to the next.
    private var now: Int64 = 0
    private var counters: ReplayCounters
    private var cpuFree: Int64 = 0  // the host CPU: one FIFO server, like the GPU stream
    private var pending = PendingCopies()  // prefetch copies not yet started, in issue order
    private var placed = false

    public init(plan: StepPlan, cost: CostModel, policy: Policy, predictor: Predictor, memory: ExpertMemory, sink: Sink,
                prefetchBufferBytes: Int = .max, fallback: MissFallback = .none, initialResident: [Int32] = [],
                recordsPrecision: Bool = false) {
        self.prefetchBufferBytes = prefetchBufferBytes
        self.fallback = fallback
        self.initialResident = initialResident
        self.recordsPrecision = recordsPrecision
        counters = ReplayCounters(steps: plan.steps)
        self.plan = plan
        self.cost = cost
        self.policy = policy
        self.predictor = predictor
        self.memory = memory
        self.sink = sink
        link = Link(engines: cost.hardware.copyEngines)
        let flat = plan.layers * plan.experts
        pinStamps = .allocate(capacity: flat)
        pinStamps.initialize(repeating: 0, count: flat)
        prefetch = PrefetchBook(experts: flat, layers: plan.layers, bytesPerCopy: cost.expertBytes)
    }

    deinit {
        pinStamps.deallocate()
        pending.deallocate()
    }

    /// Replays `chunk`: the plan given at init, or the steps that follow those replayed so far (streaming replay).
    /// The predictor is pointed at the chunk; cache, memory, link and clock carry on.
    public func replay(_ chunk: StepPlan) {
        precondition(chunk.layers == plan.layers && chunk.experts == plan.experts, "a chunk of another trace")
        plan = chunk
        predictor.rebind(chunk)
        replayChunk()
    }

    /// Settles what is still open (unused prefetches) and returns the counters of everything replayed.
    public func finish() -> ReplayCounters {
        var c = counters
        if Predictor.isEnabled {
            prefetch.finish()
            c.prefetch = prefetch.counters
            c.bytesH2D += prefetch.bytesPrefetch
            c.predictorSource = predictor.source
        }
        c.hits = c.accesses - c.misses
        c.simNanoseconds = now
        c.linkBusyNanoseconds = link.busyNanoseconds / Int64(link.engines)
        c.peakExpertBytes = memory.peakUsed
        return c
    }

    private func replayChunk() {
        // Moved out, not copied: a second reference would make the first latency append copy its arrays.
        var c = ReplayCounters(steps: 0)
        swap(&c, &counters)
        let L = plan.layers, E = plan.experts
        let expertBytes = cost.expertBytes
        let copyTime = cost.expertCopy
        // Work on local copies: the optimiser keeps them out of memory and skips class-property access checks.
        var policy = self.policy, predictor = self.predictor, sink = self.sink
        var now = self.now, cpuFree = self.cpuFree, pending = self.pending, epoch = self.epoch
        let memory = self.memory, book = self.prefetch, link = self.link, pinStamps = self.pinStamps
        defer {
            self.policy = policy; self.predictor = predictor; self.sink = sink
            self.now = now; self.cpuFree = cpuFree; self.pending = pending; self.epoch = epoch; counters = c
        }
        // The layer's misses, in raw buffers (arrays here cost uniqueness checks on every write).
        let missLand = UnsafeMutablePointer<Int64>.allocate(capacity: E)
        let missTokens = UnsafeMutablePointer<Int32>.allocate(capacity: E)
        let missExpert = UnsafeMutablePointer<Int32>.allocate(capacity: E)
        defer { missLand.deallocate(); missTokens.deallocate(); missExpert.deallocate() }
        var proposals = ExpertList(capacity: L * E), cancelled = ExpertList(capacity: E)
        defer { proposals.deallocate(); cancelled.deallocate() }
        if !placed {
            placed = true
            for e in Policy.preloadsAll ? Array(0..<Int32(L * E)) : initialResident {
                memory.admit(e, bytes: expertBytes)
                policy.didInsert(e, at: 0)
                if Sink.isEnabled { sink.record(.preload(expert: Int(e)), at: 0) }
            }
        }
        // The fallback's settings as locals; the weight arrays are read on misses and low-precision hits only.
        var lowMode = false, cpuMode = false, upgradeOnLowHit = false
        var threshold: Float = 0, lowBytes = expertBytes
        switch fallback {
        case .none: break
        case let .lowPrecision(t, bytes, upgrade): lowMode = true; threshold = t; lowBytes = bytes; upgradeOnLowHit = upgrade
        case .cpu: cpuMode = true
        }
        let lowCopy = cost.copy(bytes: lowBytes)
        let weightMax = plan.accessWeightMax, weightSum = plan.accessWeightSum
        let log: UnsafeMutablePointer<AccessPrecision>? = recordsPrecision ? .allocate(capacity: plan.accesses) : nil
        log?.initialize(repeating: .full, count: plan.accesses)
        defer {
            if let log {
                precisionLog = Array(UnsafeBufferPointer(start: log, count: plan.accesses))
                log.deallocate()
            }
        }

        plan.accessExpert.withUnsafeBufferPointer { accessExpert in
        plan.accessTokens.withUnsafeBufferPointer { accessTokens in
        plan.layerStart.withUnsafeBufferPointer { layerStart in
            let stepTokens = plan.stepTokens, stepPhase = plan.stepPhase, startsSequence = plan.stepStartsSequence
            for s in 0..<plan.steps {
                let stepStart = now
                let nonExpert = cost.nonExpertCompute(tokens: stepTokens[s])
                if Predictor.isEnabled { book.startStep() }
                for l in 0..<L {
                    epoch &+= 1
                    let first = Int(layerStart[s * L + l]), last = Int(layerStart[s * L + l + 1])
                    let gate = now + nonExpert
                    let pins = PinSet(stamps: pinStamps, epoch: epoch, landTime: book.landTime, now: gate)
                    if Sink.isEnabled {
                        sink.record(.layerStart(step: s, layer: l), at: now)
                        sink.record(.gate(step: s, layer: l), at: gate)
                    }
                    if Predictor.isEnabled {
                        startPrefetches(before: gate, &pending, &sink)
                        book.scorePredictions(layer: l, set: UnsafeBufferPointer(rebasing: accessExpert[first..<last]))
                    }
                    var gpu = gate
                    var cpuDone: Int64 = 0  // when the last CPU-computed expert's output is back on the GPU
                    var misses = 0
                    var outOfOrder = false  // a late prefetch may land before earlier demand copies
                    // The whole set is pinned before any miss looks for room, so no miss evicts a later hit.
                    for a in first..<last { pinStamps[Int(accessExpert[a])] = epoch }
                    for a in first..<last {
                        let e = accessExpert[a]
                        var landsAt: Int64 = -1  // a miss: when its copy lands
                        if memory.isResident(e) {
                            policy.didAccess(e, at: a)
                            if lowMode && memory.bytes(of: e) < expertBytes {  // held in low precision
                                if upgradeOnLowHit && weightMax[a] >= threshold {
                                    memory.release(e)
                                    guard makeRoom(memory.partition(of: e), bytes: expertBytes, pins, at: gate, demand: true, &policy, &sink) else {
                                        preconditionFailure("budget below the layer working set passed validation")
                                    }
                                    memory.admit(e, bytes: expertBytes)
                                    landsAt = demandCopy(e, duration: copyTime, bytes: expertBytes, at: gate, &sink, &c)
                                } else {
                                    c.lowPrecisionWeight += Double(weightSum[a])
                                    log?[a] = .low
                                }
                            }
                            if Predictor.isEnabled && book.state[Int(e)] != PrefetchBook.none {
                                landsAt = book.settleAccess(e, at: gate)  // -1 when the prefetch already landed
                                outOfOrder = outOfOrder || (landsAt >= 0 && misses > 0)
                                if landsAt == PrefetchBook.promote {
                                    landsAt = demandCopy(e, duration: copyTime, bytes: expertBytes, at: gate, &sink, &c)
                                }
                            }
                            if landsAt < 0 {
                                let end = gpu + cost.expertCompute(tokens: accessTokens[a])
                                if Sink.isEnabled {
                                    sink.record(.hit(expert: Int(e)), at: gate)
                                    sink.record(.computeStart(expert: Int(e)), at: gpu)
                                    sink.record(.computeEnd(expert: Int(e)), at: end)
                                }
                                gpu = end
                                continue
                            }
                        } else {
                            if cpuMode {
                                // Fiddler: compute on the host when its output is back no later than a copy would
                                // land plus the GPU's compute.
                                let tokens = accessTokens[a]
                                let move = cost.activationTransfer(tokens: tokens), work = cost.hostExpertCompute(tokens: tokens)
                                let start = max(gate + move, cpuFree)
                                let back = start + work + move
                                if back <= link.earliestStart(after: gate) + copyTime + cost.expertCompute(tokens: tokens) {
                                    cpuFree = start + work
                                    cpuDone = max(cpuDone, back)
                                    c.cpuExperts += 1
                                    c.cpuNanoseconds += work
                                    c.bytesSaved += expertBytes
                                    c.misses += 1
                                    log?[a] = .cpu
                                    if Sink.isEnabled {  // a miss served by the CPU: no .miss, nothing admitted
                                        sink.record(.cpuStart(expert: Int(e)), at: start)
                                        sink.record(.cpuEnd(expert: Int(e)), at: start + work)
                                    }
                                    continue
                                }
                            }
                            var bytes = expertBytes, duration = copyTime
                            if lowMode && weightMax[a] < threshold {
                                bytes = lowBytes; duration = lowCopy
                                c.bytesSaved += expertBytes - lowBytes
                                c.lowPrecisionWeight += Double(weightSum[a])
                                log?[a] = .low
                            }
                            guard makeRoom(memory.partition(of: e), bytes: bytes, pins, at: gate, demand: true, &policy, &sink) else {
                                preconditionFailure("budget below the layer working set passed validation")
                            }
                            memory.admit(e, bytes: bytes)
                            policy.didInsert(e, at: a)
                            landsAt = demandCopy(e, duration: duration, bytes: bytes, at: gate, &sink, &c)
                        }
                        if Sink.isEnabled { sink.record(.miss(expert: Int(e)), at: gate) }
                        missLand[misses] = landsAt
                        missTokens[misses] = accessTokens[a]
                        missExpert[misses] = e
                        misses += 1
                    }
                    c.accesses += last - first
                    c.misses += misses
                    if Predictor.isEnabled {
                        // Issue this layer's predictions behind its demand copies.
                        proposals.removeAll()
                        predictor.predict(step: s, layer: l, revealed: UnsafeBufferPointer(rebasing: accessExpert[first..<last]),
                                          into: &proposals)
                        // Proposals are pinned for this layer too: one prefetch must not evict another, nor a
                        // predicted expert that is already resident.
                        for e in proposals.elements {
                            pinStamps[Int(e)] = epoch
                            book.notePrediction(e)
                        }
                        for e in proposals.elements {
                            if memory.isResident(e) || book.heldBytes + expertBytes > prefetchBufferBytes { continue }
                            guard makeRoom(memory.partition(of: e), bytes: expertBytes, pins, at: gate, demand: false, &policy, &sink) else { continue }
                            memory.admit(e, bytes: expertBytes)
                            policy.didInsert(e, at: first)
                            book.queue(e, at: gate)
                            pending.append(e)
                            if Sink.isEnabled { sink.record(.prefetch(expert: Int(e)), at: gate) }
                        }
                        // Late prefetches can land out of id order: compute misses as they land.
                        if outOfOrder { sortByLanding(missLand, missTokens, missExpert, count: misses) }
                    }
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
                    if cpuDone > gpu { c.stallNanoseconds += cpuDone - gpu; gpu = cpuDone }
                    if Policy.releasesAfterLayer {
                        for a in first..<last {
                            memory.release(accessExpert[a])
                            policy.didEvict(accessExpert[a])
                        }
                    }
                    if Predictor.isEnabled && !pending.isEmpty {
                        startPrefetches(before: gpu, &pending, &sink)
                        cancelled.removeAll()
                        book.cancelQueued(layer: l, pending: &pending, into: &cancelled)
                        for e in cancelled.elements {
                            memory.release(e)
                            policy.didEvict(e)
                            if Sink.isEnabled { sink.record(.cancel(expert: Int(e)), at: gpu) }
                        }
                    }
                    if Sink.isEnabled { sink.record(.layerEnd(step: s, layer: l), at: gpu) }
                    now = gpu
                }
                c.recordStep(latency: now - stepStart, startsSequence: startsSequence[s], phase: stepPhase[s])
            }
        }
        }
        }
    }

    /// Frees room for an expert in `partition`: evicts the policy's victims, settling their prefetch accounts.
    /// A demand copy that finds every candidate pinned or still arriving may evict a prefetch in flight: the link
    /// serves copies in order, so that one lands before the demand copy starts.
    /// (A method with explicit `inout` state rather than a nested function: captured locals would be boxed.)
    @inline(__always)
    private func makeRoom(_ partition: Int, bytes: Int, _ pins: PinSet, at time: Int64, demand: Bool,
                          _ policy: inout Policy, _ sink: inout Sink) -> Bool {
        while !memory.fits(bytes, in: partition) {
            var found = policy.victim(in: partition, pinned: pins)
            if Predictor.isEnabled && found == nil && demand {
                found = policy.victim(in: partition, pinned: PinSet(stamps: pins.stamps, epoch: pins.epoch,
                                                                     landTime: pins.landTime, now: .max))
            }
            guard let victim = found else { return false }
            memory.release(victim)
            policy.didEvict(victim)
            if Predictor.isEnabled { prefetch.settleEviction(victim) }
            if Sink.isEnabled { sink.record(.evict(expert: Int(victim)), at: time) }
        }
        return true
    }

    /// Queues a demand copy of `e` (ahead of queued prefetches) and returns when it lands.
    @inline(__always)
    private func demandCopy(_ e: Int32, duration: Int64, bytes: Int, at gate: Int64, _ sink: inout Sink,
                            _ c: inout ReplayCounters) -> Int64 {
        let copy = link.enqueue(duration: duration, earliest: gate)
        c.bytesH2D += bytes
        if Sink.isEnabled {
            sink.record(.copyStart(expert: Int(e)), at: copy.start)
            sink.record(.copyEnd(expert: Int(e)), at: copy.end)
        }
        return copy.end
    }

    /// Starts, in order, the queued prefetch copies that the link reaches before `time` (demand copies at `time`
    /// go ahead of the rest).
    @inline(__always)
    private func startPrefetches(before time: Int64, _ pending: inout PendingCopies, _ sink: inout Sink) {
        let book = prefetch
        while let e = pending.first {
            guard book.state[Int(e)] == PrefetchBook.queued else { pending.removeFirst(); continue }
            let issued = book.issuedAt[Int(e)]
            if link.earliestStart(after: issued) >= time { break }
            pending.removeFirst()
            let copy = link.enqueue(duration: cost.expertCopy, earliest: issued)
            book.state[Int(e)] = PrefetchBook.awaitingUse
            book.landTime[Int(e)] = copy.end
            book.bytesPrefetch += cost.expertBytes
            if Sink.isEnabled {
                sink.record(.copyStart(expert: Int(e)), at: copy.start)
                sink.record(.copyEnd(expert: Int(e)), at: copy.end)
            }
        }
    }
}

/// Orders the first `count` misses by landing time (stable: equal times keep id order). Layers hold few misses.
private func sortByLanding(_ land: UnsafeMutablePointer<Int64>, _ tokens: UnsafeMutablePointer<Int32>,
                           _ experts: UnsafeMutablePointer<Int32>, count: Int) {
    for i in 1..<max(1, count) {
        var j = i
        while j > 0 && land[j - 1] > land[j] {
            swap(&land[j - 1], &land[j]); swap(&tokens[j - 1], &tokens[j]); swap(&experts[j - 1], &experts[j])
            j -= 1
        }
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
    /// Bytes not copied because a low-precision version or the CPU served a miss instead of a full copy.
    public var bytesSaved = 0
    /// Experts computed on the host CPU, and the CPU's busy time.
    public var cpuExperts = 0
    public var cpuNanoseconds: Int64 = 0
    /// Latency of the first step of each sequence (time to first token).
    public var firstStepLatencies: [Int64] = []
    /// Latency of every other decode step (time per output token).
    public var decodeStepLatencies: [Int64] = []

    init(steps: Int) { decodeStepLatencies.reserveCapacity(steps) }

    mutating func recordStep(latency: Int64, startsSequence: Bool, phase: Phase) {
        if startsSequence { firstStepLatencies.append(latency) }
        else if phase == .decode { decodeStepLatencies.append(latency) }
    }
}
