/// Room in expert memory and copies on the link, for `ReplayCore`'s per-layer steps.
extension ReplayCore {
    /// Frees room for `e` in its partition: evicts the policy's victims, settling their prefetch accounts (a queued
    /// copy is cancelled). A demand copy that finds every candidate pinned or still arriving may evict a prefetch
    /// still arriving; its ticket goes to `awaited`, and the demand copy starts only once it has landed (its bytes
    /// cannot be unsent), so memory never holds more than the budget.
    /// - Returns: whether room was found (a prefetch that finds none is not issued; a demand copy that finds none
    ///   streams: `roomForDemand`).
    @_transparent
    mutating func makeRoom(for e: Int32, bytes: Int, _ pins: PinSet, at time: Int64, demand: Bool) -> Bool {
        let partition = memory.partition(of: e)
        var free = memory.free(in: partition)
        while free < bytes {
            var found = policy.victim(in: partition, pinned: pins)
            if Predictor.isEnabled && found == nil && demand {
                found = policy.victim(in: partition, pinned: PinSet(stamps: pins.stamps, epoch: pins.epoch,
                                                                     landTime: pins.landTime, now: .max))
            }
            guard let victim = found else { return false }
            free += memory.release(victim)
            policy.didEvict(victim)
            if Predictor.isEnabled && book.state[Int(victim)] != PrefetchBook.none {
                switch book.settleEviction(victim, at: time) {
                case .none: break
                case let .queued(t): link.cancel(t); link.release(t)
                case let .arriving(t): awaited.append(t)
                case let .landed(t): link.release(t)
                }
            }
            if Sink.isEnabled { sink.record(.evict(expert: Int(victim)), at: time) }
        }
        return true
    }

    /// Sends a demand copy of `e` at `time`: committed ahead of queued prefetches, after the copies it evicted still
    /// arriving (`awaited`) land.
    /// - Returns: the copy, which the layer releases once it has read the landing.
    @_transparent
    mutating func demandCopy(_ e: Int32, duration: Int64, bytes: Int, at time: Int64) -> Link.Copy {
        if tiered, let waiting = copyFromTiers(e, duration: duration, bytes: bytes, at: time) { return waiting }
        let copy: Link.Copy
        if awaited.isEmpty {
            copy = link.send(expert: e, duration: duration, at: time)
        } else {
            copy = link.send(expert: e, duration: duration, at: time, after: awaited.elements)
            awaited.removeAll()
        }
        counters.bytesH2D += bytes
        drainLink()
        return copy
    }

    /// Simulates the link up to `time` and accounts for the copies that started and landed meanwhile.
    @inline(__always)
    mutating func advanceLink(to time: Int64) {
        guard Predictor.isEnabled || Sink.isEnabled else { return link.advance(to: time) }
        advanceLinkAccounting(to: time)
    }

    /// `advanceLink` for a replay that accounts for the link's reports (out of line: the replay loop stays small).
    @inline(never)
    mutating func advanceLinkAccounting(to time: Int64) {
        link.advance(to: time) { account($0) }
    }

    /// Accounts for the link's reports since the last drain, in order: a prefetch that started is sent (its bytes
    /// move); a landing is known (it stops pinning its expert once the clock passes it); events for the timeline.
    @inline(__always)
    mutating func drainLink() {
        guard (Predictor.isEnabled || Sink.isEnabled) && link.reports.count > 0 else { return }  // `Link.Reporting`
        for r in link.reports.elements { account(r) }
        link.drained()
    }

    /// One report of the link's.
    @inline(__always)
    mutating func account(_ r: Link.Report) {
        if Predictor.isEnabled && r.ticket >= 0 { book.reported(r.expert, ticket: r.ticket, started: r.start >= 0, landsAt: r.end) }
        if Sink.isEnabled {
            if r.start >= 0 { sink.record(.copyStart(expert: Int(r.expert)), at: r.start) }
            if r.end >= 0 { sink.record(.copyEnd(expert: Int(r.expert)), at: r.end) }
        }
    }

    /// Asks the link when each outstanding miss's copy lands (call once the copies that can share the link with
    /// them are sent), and releases the copies.
    @inline(__always)
    mutating func resolveLandings() {
        guard misses.pending > 0 else { return }  // the link fixed every landing when the copies were sent
        for m in 0..<misses.count where misses[m].ticket >= 0 {
            misses[m].landsAt = link.landing(of: misses[m].ticket)
            link.release(misses[m].ticket)
            misses[m].ticket = -1
        }
        misses.pending = 0
        drainLink()
    }

    /// Cancels the prefetches for `layer` (nil: every layer) that were never sent, freeing their memory (out of
    /// line: the caller checks that some are queued).
    @inline(never)
    mutating func cancelQueuedPrefetches(layer l: Int?, at time: Int64) {
        let queued = link.queuedPrefetches
        cancelled.removeAll()
        for t in queued where l == nil || book.layer(of: link.expert(of: t)) == l { cancelled.append(t) }
        for t in cancelled.elements {
            let e = link.expert(of: t)
            link.cancel(t)
            link.release(book.cancel(e))
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
    let firstSteps: UnsafeBufferPointer<Int32>
    let laterOutputs: UnsafeBufferPointer<Int32>
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
                                    try plan.stepFirstSteps.withUnsafeBufferPointer { firsts in
                                    try plan.stepLaterOutputs.withUnsafeBufferPointer { laters in
                                        try plan.stepAttention.withUnsafeBufferPointer { attention in
                                            try body(PlanColumns(layers: plan.layers, layerStart: layerStart, accessExpert: experts,
                                                                 accessTokens: tokens, weightMax: plan.hasWeights ? weightMax : nil,
                                                                 weightSum: plan.hasWeights ? weightSum : nil, stepTokens: stepTokens,
                                                                 stepPhase: phase, firstSteps: firsts, laterOutputs: laters,
                                                                 attention: attention))
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
}

/// A layer's misses in one raw buffer, a record each: the expert, its tokens, and when its copy lands, or, while the
/// link has not said (`pending` of them), the copy's ticket (`ReplayCore.resolveLandings` asks). Allocated once per
/// replay with room for a whole layer.
struct MissList {
    struct Entry {
        var landsAt: Int64
        var expert: Int32
        var tokens: Int32
        /// The copy's ticket while its landing is pending, else -1.
        var ticket: Link.Ticket
    }
    private let entries: UnsafeMutablePointer<Entry>
    private(set) var count = 0
    /// Misses whose landing is pending.
    var pending = 0

    init(capacity: Int) { entries = .allocate(capacity: capacity) }

    /// Frees the buffer; the owner calls it once.
    func deallocate() { entries.deallocate() }

    @inline(__always) subscript(m: Int) -> Entry {
        get { entries[m] }
        nonmutating set { entries[m] = newValue }
    }

    @inline(__always) mutating func removeAll() { count = 0; pending = 0 }

    func contains(_ e: Int32) -> Bool { (0..<count).contains { entries[$0].expert == e } }

    /// Removes the first miss, once every landing is known and sorted (`sortByLanding`): the one landing first.
    mutating func removeFirst() {
        precondition(pending == 0, "removed a miss whose landing was not read")
        for i in 1..<max(1, count) { entries[i - 1] = entries[i] }
        count -= 1
    }

    @inline(__always) mutating func append(expert e: Int32, tokens t: Int32, copy: Link.Copy) {
        entries[count] = Entry(landsAt: copy.fixedLanding, expert: e, tokens: t, ticket: copy.ticket)
        if copy.ticket >= 0 { pending += 1 }
        count += 1
    }

    /// Whether the misses are in landing order (a debug check of the orders that need no sort).
    var isSortedByLanding: Bool { (1..<max(1, count)).allSatisfy { entries[$0 - 1].landsAt <= entries[$0].landsAt } }

    /// Orders the misses by landing time (stable: equal times keep id order), once every landing is resolved.
    /// Usually already sorted: one pass.
    @inline(__always) func sortByLanding() {
        precondition(pending == 0, "sorted misses whose landings were not read")
        for i in 1..<max(1, count) where entries[i - 1].landsAt > entries[i].landsAt {
            var j = i
            while j > 0 && entries[j - 1].landsAt > entries[j].landsAt {
                swap(&entries[j - 1], &entries[j])
                j -= 1
            }
        }
    }
}
