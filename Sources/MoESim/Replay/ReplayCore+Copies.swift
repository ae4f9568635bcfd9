/// Room in expert memory and copies on the link, for `ReplayCore`'s per-layer steps.
extension ReplayCore {
    /// Frees room for `e` in its partition: evicts the policy's victims, settling their prefetch accounts. A demand
    /// copy that finds every candidate pinned or still arriving may evict a prefetch in flight; it then waits for that
    /// copy to land before it starts (its bytes cannot be unsent), so memory never holds more than the budget.
    /// - Returns: whether room was found (a prefetch that finds none is not issued; a demand copy that finds none
    ///   streams: `roomStreaming`), and the ticket of a copy in flight that was evicted (-1).
    @_transparent
    mutating func makeRoom(for e: Int32, bytes: Int, _ pins: PinSet, at time: Int64, demand: Bool) -> (found: Bool, after: Link.Ticket) {
        let partition = memory.partition(of: e)
        var after: Link.Ticket = -1
        while !memory.fits(bytes, in: partition) {
            var found = policy.victim(in: partition, pinned: pins)
            if Predictor.isEnabled && found == nil && demand {
                found = policy.victim(in: partition, pinned: PinSet(stamps: pins.stamps, epoch: pins.epoch,
                                                                     landTime: pins.landTime, now: .max))
            }
            guard let victim = found else { return (false, -1) }
            memory.release(victim)
            policy.didEvict(victim)
            if Predictor.isEnabled {
                if book.landTime[Int(victim)] > time && book.state[Int(victim)] == PrefetchBook.awaitingUse {
                    after = book.ticket[Int(victim)]
                }
                if book.state[Int(victim)] == PrefetchBook.queued { link.cancel(book.ticket[Int(victim)]) }
                book.settleEviction(victim)
            }
            if Sink.isEnabled { sink.record(.evict(expert: Int(victim)), at: time) }
        }
        return (true, after)
    }

    /// Sends a demand copy of `e` (ahead of queued prefetches, after `after` lands); returns when it lands, or -1 with
    /// the ticket to ask the link once the gate's copies are all issued.
    @inline(__always)
    mutating func demandCopy(_ e: Int32, duration: Int64, bytes: Int, at gate: Int64, after: Link.Ticket = -1) -> Link.Copy {
        let copy = link.sendDemand(expert: e, duration: duration, at: gate, after: after)
        counters.bytesH2D += bytes
        if Sink.isEnabled && copy.end >= 0 {
            sink.record(.copyStart(expert: Int(e)), at: copy.start)
            sink.record(.copyEnd(expert: Int(e)), at: copy.end)
        }
        return copy
    }

    /// Simulates the link up to `time` and accounts for the copies that started and landed meanwhile.
    @_transparent
    mutating func advanceLink(to time: Int64) {
        if link.engines == 1 {  // each start's landing is known at once: accounted without the lists
            while let t = link.startNextQueued(before: time) { startedAlone(t) }
        } else {
            link.advance(to: time)
            drainLink()
        }
    }

    /// One engine: a queued copy started (its landing is known): a prefetch is on its way, its bytes move.
    @inline(__always)
    mutating func startedAlone(_ t: Link.Ticket) {
        let e = link.expert(of: t)
        if Predictor.isEnabled && book.state[Int(e)] == PrefetchBook.queued && book.ticket[Int(e)] == t {
            book.state[Int(e)] = PrefetchBook.awaitingUse
            book.landTime[Int(e)] = link.end(of: t)
            book.ticket[Int(e)] = -1
            book.bytesPrefetch += cost.expertBytes
        }
        if Sink.isEnabled {
            sink.record(.copyStart(expert: Int(e)), at: link.start(of: t))
            sink.record(.copyEnd(expert: Int(e)), at: link.end(of: t))
        }
        link.recycle(t)
    }

    /// A gate needs expert `e`, whose prefetch `t` has not started, from a predictor whose copies keep their order
    /// (MoE-Prefetch: one stream of copies, none sent ahead): the copy is waited for in its turn. With one engine the
    /// queue runs until `t` starts; with several its landing is asked once the gate's copies are issued.
    @inline(__always)
    mutating func awaitInOrder(_ t: Link.Ticket, expert e: Int32) -> Link.Copy {
        counters.bytesH2D += cost.expertBytes
        book.ticket[Int(e)] = -1
        guard link.engines == 1 else { return Link.Copy(ticket: t, start: -1, end: -1) }
        while let next = link.startNextQueued(before: .max) {
            let copy = Link.Copy(ticket: -1, start: link.start(of: next), end: link.end(of: next))
            startedAlone(next)  // `e` is settled already: only its events are recorded
            if next == t { return copy }
        }
        preconditionFailure("prefetch \(t) of expert \(e) is neither queued nor started")
    }

    /// Accounts for the copies the link started and landed since the last drain: a prefetch that starts is on its
    /// way (its bytes move); events for the timeline.
    @inline(__always)
    mutating func drainLink() {
        for t in link.started.elements { started(t) }
        for t in link.landed.elements { landed(t) }
        link.drained()
    }

    /// A copy started: a prefetch is on its way (its bytes move).
    @inline(__always)
    mutating func started(_ t: Link.Ticket) {
        let e = link.expert(of: t)
        if Predictor.isEnabled && book.state[Int(e)] == PrefetchBook.queued && book.ticket[Int(e)] == t {
            book.state[Int(e)] = PrefetchBook.awaitingUse
            book.landTime[Int(e)] = link.end(of: t) >= 0 ? link.end(of: t) : .max
            book.bytesPrefetch += cost.expertBytes
        }
        if Sink.isEnabled { sink.record(.copyStart(expert: Int(e)), at: link.start(of: t)) }
    }

    /// A copy landed: a prefetch's landing time is known.
    @inline(__always)
    mutating func landed(_ t: Link.Ticket) {
        let e = link.expert(of: t)
        if Predictor.isEnabled && book.ticket[Int(e)] == t {
            book.landTime[Int(e)] = link.end(of: t)
            book.ticket[Int(e)] = -1
        }
        if Sink.isEnabled { sink.record(.copyEnd(expert: Int(e)), at: link.end(of: t)) }
    }

    /// Cancels the prefetches for `layer` that never started, freeing their memory.
    @inline(__always)
    mutating func cancelQueuedPrefetches(layer l: Int, at time: Int64) {
        let queued = link.queuedPrefetches
        if queued.isEmpty { return }
        cancelled.removeAll()
        for t in queued where book.layer(of: link.expert(of: t)) == l { cancelled.append(t) }
        for t in cancelled.elements {
            let e = link.expert(of: t)
            link.cancel(t)
            book.cancel(e)
            memory.release(e)
            policy.didEvict(e)
            if Sink.isEnabled { sink.record(.cancel(expert: Int(e)), at: time) }
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
    let attention: UnsafeBufferPointer<StepAttention>

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
                                        try plan.stepAttention.withUnsafeBufferPointer { attention in
                                            try body(PlanColumns(layers: plan.layers, layerStart: layerStart, accessExpert: experts,
                                                                 accessTokens: tokens, weightMax: plan.hasWeights ? weightMax : nil,
                                                                 weightSum: plan.hasWeights ? weightSum : nil, stepTokens: stepTokens,
                                                                 stepPhase: phase, startsSequence: starts, attention: attention))
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
}

/// A layer's misses in raw buffers: the expert, its tokens, and when its data is on the GPU (or -1 and the ticket of
/// its copy, until the link is asked). Allocated once per replay with room for a whole layer.
struct MissList {
    let expert: UnsafeMutablePointer<Int32>
    let tokens: UnsafeMutablePointer<Int32>
    let landsAt: UnsafeMutablePointer<Int64>
    let ticket: UnsafeMutablePointer<Link.Ticket>
    private(set) var count = 0

    init(capacity: Int) {
        expert = .allocate(capacity: capacity)
        tokens = .allocate(capacity: capacity)
        landsAt = .allocate(capacity: capacity)
        ticket = .allocate(capacity: capacity)
    }

    /// Frees the buffers; the owner calls it once.
    func deallocate() { expert.deallocate(); tokens.deallocate(); landsAt.deallocate(); ticket.deallocate() }

    @inline(__always) mutating func removeAll() { count = 0 }

    func contains(_ e: Int32) -> Bool { (0..<count).contains { expert[$0] == e } }

    /// Removes the first miss (after `sortByLanding`, the one landing first).
    mutating func removeFirst() {
        for i in 1..<max(1, count) { expert[i - 1] = expert[i]; tokens[i - 1] = tokens[i]; landsAt[i - 1] = landsAt[i]; ticket[i - 1] = ticket[i] }
        count -= 1
    }

    @inline(__always) mutating func append(expert e: Int32, tokens t: Int32, copy: Link.Copy) {
        expert[count] = e; tokens[count] = t; landsAt[count] = copy.end; ticket[count] = copy.ticket
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
