/// Room in expert memory and copies on the link, for `ReplayCore`'s per-layer steps.
extension ReplayCore {
    /// Frees room for `e` in its partition: evicts the policy's victims, settling their prefetch accounts. A demand
    /// copy that finds every candidate pinned or still arriving may evict a prefetch in flight: the link serves copies
    /// in order, so that one lands before the demand copy starts.
    /// - Returns: false when a prefetch finds no room (it is then not issued); a demand copy always finds room,
    ///   since the budget holds the layer's working set (checked before the replay).
    @discardableResult @inline(__always)
    mutating func makeRoom(for e: Int32, bytes: Int, _ pins: PinSet, at time: Int64, demand: Bool) -> Bool {
        let partition = memory.partition(of: e)
        while !memory.fits(bytes, in: partition) {
            var found = policy.victim(in: partition, pinned: pins)
            if Predictor.isEnabled && found == nil && demand {
                found = policy.victim(in: partition, pinned: PinSet(stamps: pins.stamps, epoch: pins.epoch,
                                                                     landTime: pins.landTime, now: .max))
            }
            guard let victim = found else {
                precondition(!demand, "budget below the layer working set passed validation")
                return false
            }
            memory.release(victim)
            policy.didEvict(victim)
            if Predictor.isEnabled { book.settleEviction(victim) }
            if Sink.isEnabled { sink.record(.evict(expert: Int(victim)), at: time) }
        }
        return true
    }

    /// Sends a demand copy of `e` (ahead of queued prefetches) and returns when it lands.
    @inline(__always)
    mutating func demandCopy(_ e: Int32, duration: Int64, bytes: Int, at gate: Int64) -> Int64 {
        let copy = link.enqueue(duration: duration, earliest: gate)
        counters.bytesH2D += bytes
        if Sink.isEnabled {
            sink.record(.copyStart(expert: Int(e)), at: copy.start)
            sink.record(.copyEnd(expert: Int(e)), at: copy.end)
        }
        return copy.end
    }

    /// Starts, in order, the queued prefetch copies that the link reaches before `time` (demand copies at `time`
    /// go ahead of the rest).
    @inline(__always)
    mutating func startPrefetches(before time: Int64) {
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

/// The columns of a run's plan as raw pointers, valid while the engine replays the run (arrays read in the loop
/// would cost a bounds and uniqueness check per access).
struct PlanColumns {
    let layers: Int
    let layerStart: UnsafeBufferPointer<Int32>
    let accessExpert: UnsafeBufferPointer<Int32>
    let accessTokens: UnsafeBufferPointer<Int32>
    /// Per access, the largest and summed gate weight of the step's tokens; nil when the trace has no weights.
    let weightMax: UnsafeBufferPointer<Float>?
    let weightSum: UnsafeBufferPointer<Float>?
    let stepTokens: UnsafeBufferPointer<Int32>
    let stepPhase: UnsafeBufferPointer<Phase>
    let startsSequence: UnsafeBufferPointer<Bool>

    /// The accesses of layer `l` of step `s`.
    @inline(__always) func layer(_ l: Int, of s: Int) -> Range<Int> {
        Int(layerStart[s * layers + l])..<Int(layerStart[s * layers + l + 1])
    }

    /// Calls `body` with the columns of `plan`.
    static func with<R>(_ plan: StepPlan, _ body: (PlanColumns) throws -> R) rethrows -> R {
        try plan.layerStart.withUnsafeBufferPointer { layerStart in
            try plan.accessExpert.withUnsafeBufferPointer { experts in
                try plan.accessTokens.withUnsafeBufferPointer { tokens in
                    try plan.accessWeightMax.withUnsafeBufferPointer { weightMax in
                        try plan.accessWeightSum.withUnsafeBufferPointer { weightSum in
                            try plan.stepTokens.withUnsafeBufferPointer { stepTokens in
                                try plan.stepPhase.withUnsafeBufferPointer { phase in
                                    try plan.stepStartsSequence.withUnsafeBufferPointer { starts in
                                        try body(PlanColumns(layers: plan.layers, layerStart: layerStart, accessExpert: experts,
                                                             accessTokens: tokens, weightMax: plan.hasWeights ? weightMax : nil,
                                                             weightSum: plan.hasWeights ? weightSum : nil, stepTokens: stepTokens,
                                                             stepPhase: phase, startsSequence: starts))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A layer's misses in raw buffers: the expert, its tokens, and when its data is on the GPU. Allocated once per
/// replay with room for a whole layer.
struct MissList {
    let expert: UnsafeMutablePointer<Int32>
    let tokens: UnsafeMutablePointer<Int32>
    let landsAt: UnsafeMutablePointer<Int64>
    private(set) var count = 0

    init(capacity: Int) {
        expert = .allocate(capacity: capacity)
        tokens = .allocate(capacity: capacity)
        landsAt = .allocate(capacity: capacity)
    }

    /// Frees the buffers; the owner calls it once.
    func deallocate() { expert.deallocate(); tokens.deallocate(); landsAt.deallocate() }

    @inline(__always) mutating func removeAll() { count = 0 }

    @inline(__always) mutating func append(expert e: Int32, tokens t: Int32, landsAt time: Int64) {
        expert[count] = e; tokens[count] = t; landsAt[count] = time
        count += 1
    }

    /// Orders the misses by landing time (stable: equal times keep id order). Usually already sorted: one pass.
    @inline(__always) func sortByLanding() {
        for i in 1..<max(1, count) where landsAt[i - 1] > landsAt[i] {
            var j = i
            while j > 0 && landsAt[j - 1] > landsAt[j] {
                swap(&landsAt[j - 1], &landsAt[j]); swap(&tokens[j - 1], &tokens[j]); swap(&expert[j - 1], &expert[j])
                j -= 1
            }
        }
    }
}
