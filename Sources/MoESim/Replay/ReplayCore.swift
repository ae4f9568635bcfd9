/// The replay loop: every step of a run through the GPU stream, the link, the host CPU and expert memory, under one
/// strategy's plug-ins (SIMULATION.md, Execution model). Per layer, in order:
///
/// 1. **gate**: the non-expert compute runs, then the gate reveals the layer's expert set, which is pinned;
/// 2. **hits and misses**: a resident expert is a hit (computed first, in id order, or, when the runtime's demand
///    copies share the compute stream, after the layer's copies land); a prefetch still arriving is late; a miss goes
///    to the miss handler, which makes it a copy, a low-precision copy, host compute or a skip;
/// 3. **copies**: each copied miss gets room (the eviction policy picks victims) and a demand copy, committed ahead
///    of queued prefetches;
/// 4. **prefetch issue**: the predictor's proposals are queued behind the demand copies;
/// 5. **compute**: once every copy of the gate is sent, the link is asked when each lands; the misses are computed
///    in landing order;
/// 6. **layer end**: on-demand frees the layer, prefetches for it still queued are cancelled (unless the predictor
///    copies regardless: MoE-Prefetch), the clock advances.
///
/// A value in a local while it runs (`ReplayEngine` moves it in and out), so that the optimiser keeps the clocks and
/// counters in registers; generic over the plug-ins so that each specialises, and `NoPrefetch`, `FullCopy` and
/// `NoEvents` compile away. Invariant: expert memory never exceeds a partition's capacity; time never decreases.
struct ReplayCore<Policy: CachePolicy, Predictor: PrefetchPredictor, Handler: MissHandler, Sink: EventSink> {
    var policy: Policy
    var predictor: Predictor
    var handler: Handler
    var sink: Sink
    let memory: ExpertMemory
    let link: Link
    let book: PrefetchBook
    /// With several GPUs, per flat expert whether this GPU's map holds it (proposals of the others are dropped: the
    /// GPU never computes them); nil with one GPU.
    let held: UnsafePointer<Bool>?
    /// Host memory and the SSD below it when experts live in three tiers; nil when every expert is in host memory.
    let host: HostTier?
    /// Whether `host` is there: the replay loop tests this flag, not the reference (no retain on the hot path).
    let tiered: Bool
    /// The layer's GPU copies and host computations waiting for SSD reads (three tiers).
    var reads: PendingReads
    let pins: UnsafeMutablePointer<Int32>
    let cost: CostModel
    /// Bytes that prefetched experts not yet used may hold at once.
    let prefetchBufferBytes: Int
    /// Which proposals are left unissued (`prefetch.admission`), and what its rules keep.
    var admission: AdmissionState
    var now: Int64 = 0
    var hostFree: Int64 = 0  // the host CPU: one FIFO server, like the GPU stream
    var epoch: Int32 = 0
    var counters: ReplayCounters
    var misses: MissList
    /// The layer's hits (their accesses), held back while its copies travel when they share the compute stream
    /// (`copiesHoldCompute`).
    var heldHits: ExpertList
    /// Tickets of copies still arriving that the next demand copy evicted: it waits for them to land.
    var awaited: ExpertList
    var proposals: ExpertList
    var cancelled: ExpertList
    /// A streaming layer's experts already computed, which may be freed (`roomForDemand`).
    var streamed: ExpertList
    /// How each access of the current run was computed, when numerics asked for it.
    var precisionLog: UnsafeMutablePointer<AccessPrecision>?

    /// Replays steps `steps` of the run's plan.
    mutating func replay(_ plan: PlanColumns, steps: Range<Int>) {
        for s in steps {
            let stepStart = now
            let nonExpert = cost.nonExpertCompute(tokens: plan.stepTokens[s], attention: plan.attention[s])
            if Predictor.isEnabled { book.startStep() }
            for l in 0..<plan.layers { replayLayer(step: s, layer: l, plan, nonExpert: nonExpert) }
            counters.recordStep(started: stepStart, latency: now - stepStart, firstSteps: plan.firstSteps[s],
                                laterOutputs: plan.laterOutputs[s], kvHeld: plan.attention[s].kvHeld)
        }
    }

    /// Layer `l` of step `s` from `now` (steps 1-6 above), `nonExpert` before its gate; `now` is its end after.
    @inline(__always)
    mutating func replayLayer(step s: Int, layer l: Int, _ plan: PlanColumns, nonExpert: Int64) {
        let set = plan.layer(l, of: s)
        let gate = openGate(step: s, layer: l, set: set, plan, nonExpert: nonExpert)
        var layer = LayerProgress(gate: gate)
        findHitsAndMisses(set, plan, &layer)
        if Predictor.isEnabled {
            issuePrefetches(step: s, layer: l, set: set, plan, gate: gate)
            if admission.rule != .none { noteGateForAdmission(gate, set: set, plan) }
        }
        computeMisses(plan, &layer)
        endLayer(step: s, layer: l, set: set, plan, layer)
    }

    /// The layer's non-expert compute, then its gate: the set is pinned and late-arriving prefetches are settled.
    @_transparent
    mutating func openGate(step s: Int, layer l: Int, set: Range<Int>, _ plan: PlanColumns, nonExpert: Int64) -> Int64 {
        epoch &+= 1
        let gate = now + nonExpert
        if Sink.isEnabled {
            sink.record(.layerStart(step: s, layer: l), at: now)
            sink.record(.gate(step: s, layer: l), at: gate)
        }
        advanceLink(to: gate)
        if tiered { openHostGate(gate) }
        if Predictor.isEnabled { book.scorePredictions(layer: l, set: UnsafeBufferPointer(rebasing: plan.accessExpert[set])) }
        // The whole set is pinned before any miss looks for room, so no miss evicts a later hit.
        for a in set { pins[Int(plan.accessExpert[a])] = epoch }
        return gate
    }

    /// Hits are computed at once on the GPU stream; every other access becomes an entry of `misses` (with the copy
    /// its data arrives by), host compute, or a skip.
    @_transparent
    mutating func findHitsAndMisses(_ set: Range<Int>, _ plan: PlanColumns, _ layer: inout LayerProgress) {
        let gate = layer.gate, pinSet = pinned(at: gate), holdsHits = cost.copiesHoldCompute
        misses.removeAll()
        for a in set {
            let e = plan.accessExpert[a], tokens = plan.accessTokens[a]
            // Settled ahead of its turn to free room: computed already, or waiting among the misses.
            if layer.streaming && (streamed.contains(e, from: 0) || misses.contains(e)) { continue }
            let copy: Link.Copy  // the copy the access waits for
            if memory.isResident(e) {
                policy.didAccess(e, at: a)
                var arriving: Link.Copy? = nil  // none: a hit
                if !Handler.alwaysCopies && memory.bytes(of: e) < cost.expertBytes {  // held in low precision
                    if handler.acceptsLowPrecisionHit(miss(a, plan, gate)) {
                        counters.lowPrecisionWeight += Double(plan.weightSum![a])
                        precisionLog?[a] = .low
                    } else {  // upgrade: the full version replaces it
                        memory.release(e)
                        policy.willInsert(e)
                        let at = roomForDemand(e, bytes: cost.expertBytes, pinSet, set, plan, before: a, &layer)
                        memory.admit(e, bytes: cost.expertBytes)
                        arriving = demandCopy(e, duration: cost.expertCopy, bytes: cost.expertBytes, at: at)
                    }
                }
                if Predictor.isEnabled && book.state[Int(e)] != PrefetchBook.none {
                    if let prefetched = settlePrefetched(e, at: gate) { arriving = prefetched }
                }
                guard let arriving else {
                    if Sink.isEnabled { sink.record(.hit(expert: Int(e)), at: gate) }
                    if holdsHits { heldHits.append(Int32(a)) } else { layer.gpu = compute(e, tokens: tokens, from: layer.gpu) }
                    continue
                }
                copy = arriving
            } else {
                switch Handler.alwaysCopies ? .copy : handler.decide(miss(a, plan, gate), MissResources(
                    linkFreeAt: link.earliestStart(after: gate), hostFreeAt: hostFree,
                    expertReadyAt: tiered ? hostReadyEstimate(e, at: gate) : gate)) {
                case .copy:
                    copy = copyIn(e, bytes: cost.expertBytes, duration: cost.expertCopy, access: a, set, plan, pinSet, &layer)
                case let .copyLow(bytes):
                    counters.bytesSaved += cost.expertBytes - bytes
                    counters.lowPrecisionWeight += Double(plan.weightSum![a])
                    precisionLog?[a] = .low
                    copy = copyIn(e, bytes: bytes, duration: cost.copy(bytes: bytes), access: a, set, plan, pinSet, &layer)
                case .host:
                    computeOnHost(e, tokens: tokens, access: a, &layer)
                    continue
                case .skip:
                    counters.misses += 1
                    counters.skippedExperts += 1
                    counters.bytesSaved += cost.expertBytes
                    precisionLog?[a] = .skipped
                    continue
                }
            }
            if Sink.isEnabled { sink.record(.miss(expert: Int(e)), at: gate) }
            misses.append(expert: e, tokens: tokens, copy: copy)
        }
        counters.accesses += set.count
        counters.misses += misses.count
    }

    /// A gate asks, at `gate`, for expert `e`, which has a prefetch open: a hit if its copy landed by then (returns
    /// nil); otherwise the copy the layer waits for (late). Both the main path and a streaming layer settle here.
    @inline(__always)
    mutating func settlePrefetched(_ e: Int32, at gate: Int64) -> Link.Copy? {
        switch book.settleAccess(e, at: gate) {
        case let .useful(t):
            link.release(t)
            return nil
        case let .late(t):
            return link.handle(t)
        case let .queued(t):
            return commitQueued(t, at: gate)
        }
    }

    /// A gate needs prefetch `t`, still queued: it is committed now, ahead of the other queued prefetches, or, for a
    /// predictor whose copies keep their order (MoE-Prefetch), together with every prefetch queued ahead of it, in
    /// order. Out of line: it keeps the replay loop small.
    @inline(never)
    mutating func commitQueued(_ t: Link.Ticket, at gate: Int64) -> Link.Copy {
        if !Predictor.cancelsUnstarted {
            link.commitAhead(of: t, at: gate) { ahead, e, landsAt in book.sent(e, ticket: ahead, landsAt: landsAt) }
        }
        let copy = link.commitTakingOver(t, at: gate)
        counters.bytesH2D += cost.expertBytes  // a demand copy now: its bytes are the access's, not a prefetch's
        drainLink()
        return copy
    }

    /// Queues the predictor's proposals as prefetch copies behind the layer's demand copies.
    @_transparent
    mutating func issuePrefetches(step s: Int, layer l: Int, set: Range<Int>, _ plan: PlanColumns, gate: Int64) {
        proposals.removeAll()
        if Predictor.replacesQueue && !link.queuedPrefetches.isEmpty { cancelQueuedPrefetches(layer: nil, at: gate) }
        predictor.predict(step: s, layer: l, revealed: UnsafeBufferPointer(rebasing: plan.accessExpert[set]), into: &proposals)
        if let held { proposals.keep(where: held) }
        // Proposals are pinned for this layer too: one prefetch must not evict another, nor a predicted expert that
        // is already resident.
        for e in proposals.elements {
            pins[Int(e)] = epoch
            book.notePrediction(e, madeAt: l)
        }
        let pinSet = pinned(at: gate)
        for e in proposals.elements {
            if memory.isResident(e) { continue }
            if tiered && !prefetchFromSSD(e, at: gate) { continue }
            if book.heldBytes + cost.expertBytes > prefetchBufferBytes { continue }
            if admission.rule != .none && !admits(e, layer: l, gate: gate, pinSet) {
                book.refused()
                continue
            }
            policy.willInsert(e)
            guard makeRoom(for: e, bytes: cost.expertBytes, pinSet, at: gate, demand: false) else {
                precondition(awaited.isEmpty, "a prefetch evicted a copy still arriving, which pins its expert")
                // A predictor that never cancels proposes one layer, one partition, pinning as it goes: once no room
                // is found none will be for the rest, and looking again costs a scan of the pinned per proposal.
                if Predictor.cancelsUnstarted { continue } else { break }
            }
            memory.admit(e, bytes: cost.expertBytes)
            policy.didInsert(e, at: set.lowerBound)
            // A copy that is never cancelled is pinned while queued, so a later prefetch cannot evict it either.
            book.queue(e, ticket: link.queuePrefetch(expert: e, duration: cost.expertCopy, at: gate), pinned: !Predictor.cancelsUnstarted)
            if tiered { prefetchReadsHost(e) }
            if Sink.isEnabled { sink.record(.prefetch(expert: Int(e)), at: gate) }
        }
    }

    /// Computes the misses as their data lands, in landing order (ties in id order); on-demand, and a runtime whose
    /// copies share the compute stream, first wait for all (the latter then computes the held hits).
    @_transparent
    mutating func computeMisses(_ plan: PlanColumns, _ layer: inout LayerProgress) {
        if tiered && !reads.isEmpty { settleReads(&layer) }
        resolveLandings()
        // Without prefetches or tiers, every miss's copy was sent in turn on one FIFO server: they land in order.
        if Predictor.isEnabled || tiered || !link.isClosedForm { misses.sortByLanding() } else { assert(misses.isSortedByLanding) }
        let holdsHits = cost.copiesHoldCompute
        if (Policy.computesAfterAllCopies || holdsHits) && misses.count > 0 {
            layer.wait(until: misses[misses.count - 1].landsAt, &counters)
        }
        if holdsHits { computeHeldHits(plan, &layer) }
        for m in 0..<misses.count {
            let miss = misses[m]
            layer.wait(until: miss.landsAt, &counters)
            layer.gpu = compute(miss.expert, tokens: miss.tokens, from: layer.gpu)
        }
        layer.wait(until: layer.hostDone, &counters)
    }

    /// The layer ends when its last expert is done: on-demand frees its experts, prefetches for it that never
    /// started are cancelled, and the clock moves to the end.
    @_transparent
    mutating func endLayer(step s: Int, layer l: Int, set: Range<Int>, _ plan: PlanColumns, _ layer: LayerProgress) {
        let end = layer.gpu
        if Policy.releasesAfterLayer {
            for a in set where memory.isResident(plan.accessExpert[a]) {  // a streamed layer freed some already
                memory.release(plan.accessExpert[a])
                policy.didEvict(plan.accessExpert[a])
            }
        }
        // The link is advanced to the layer's end only to tell which of the layer's own prefetches started before it
        // (the rest are cancelled); anything else it would start, the next gate's advance starts at the same time.
        // A timeline advances here regardless, so that its events keep their order.
        if Predictor.isEnabled && (Sink.isEnabled || (Predictor.cancelsUnstarted && book.hasQueued(for: l))) {
            advanceLink(to: end)
            if Predictor.cancelsUnstarted && book.hasQueued(for: l) { cancelQueuedPrefetches(layer: l, at: end) }
        }
        if Sink.isEnabled { sink.record(.layerEnd(step: s, layer: l), at: end) }
        now = end
    }

    // MARK: Helpers of the steps above

    /// The experts no miss may evict now: the layer's set, and copies still on the link.
    @inline(__always) func pinned(at time: Int64) -> PinSet {
        PinSet(stamps: pins, epoch: epoch, landTime: book.landTime, now: time)
    }

    @inline(__always) func miss(_ a: Int, _ plan: PlanColumns, _ gate: Int64) -> Miss {
        Miss(expert: plan.accessExpert[a], tokens: plan.accessTokens[a], weightMax: plan.weightMax?[a] ?? 0, gate: gate)
    }

    /// Admits a missed expert at `bytes` and sends its demand copy.
    @_transparent
    mutating func copyIn(_ e: Int32, bytes: Int, duration: Int64, access a: Int, _ set: Range<Int>, _ plan: PlanColumns,
                         _ pinSet: PinSet, _ layer: inout LayerProgress) -> Link.Copy {
        policy.willInsert(e)
        let at = roomForDemand(e, bytes: bytes, pinSet, set, plan, before: a, &layer)
        memory.admit(e, bytes: bytes)
        policy.didInsert(e, at: a)
        return demandCopy(e, duration: duration, bytes: bytes, at: at)
    }

    /// Runs expert `e` for `tokens` tokens on the GPU stream from `start`; returns when it ends.
    @inline(__always)
    mutating func compute(_ e: Int32, tokens: Int32, from start: Int64) -> Int64 {
        let end = start + cost.expertCompute(tokens: tokens)
        if Sink.isEnabled {
            sink.record(.computeStart(expert: Int(e)), at: start)
            sink.record(.computeEnd(expert: Int(e)), at: end)
        }
        return end
    }

    /// Computes the hits held back behind the layer's copies (`heldHits`), in id order, from where the stream is.
    @inline(__always)
    mutating func computeHeldHits(_ plan: PlanColumns, _ layer: inout LayerProgress) {
        for a in heldHits.elements {
            layer.gpu = compute(plan.accessExpert[Int(a)], tokens: plan.accessTokens[Int(a)], from: layer.gpu)
        }
        heldHits.removeAll()
    }

    /// Runs a missed expert on the host CPU: its hidden states go over, it computes, they come back. With three
    /// tiers, an expert not in host memory is read from the SSD first (`settleReads` runs it).
    @inline(__always)
    mutating func computeOnHost(_ e: Int32, tokens: Int32, access a: Int, _ layer: inout LayerProgress) {
        let move = cost.activationTransfer(tokens: tokens), work = cost.hostExpertCompute(tokens: tokens)
        counters.cpuExperts += 1
        counters.cpuNanoseconds += work
        counters.bytesSaved += cost.expertBytes
        counters.misses += 1
        precisionLog?[a] = .cpu
        if tiered && !hostComputes(e, tokens: tokens, at: layer.gate) { return }
        runOnHost(e, from: layer.gate + move, work: work, move: move, &layer)
    }

    /// The CPU computes `e` (`work` ns) once it is free and the hidden states are there (`ready`); the outputs
    /// come back to the GPU (`move` ns).
    @inline(__always)
    mutating func runOnHost(_ e: Int32, from ready: Int64, work: Int64, move: Int64, _ layer: inout LayerProgress) {
        let start = max(ready, hostFree)
        hostFree = start + work
        layer.hostDone = max(layer.hostDone, start + work + move)
        if Sink.isEnabled {  // a miss served by the CPU: no .miss, nothing admitted
            sink.record(.cpuStart(expert: Int(e)), at: start)
            sink.record(.cpuEnd(expert: Int(e)), at: start + work)
        }
    }
}

/// The GPU stream's progress through one layer: when it is free, and when the host's last output is back.
struct LayerProgress {
    let gate: Int64
    var gpu: Int64
    var hostDone: Int64 = 0
    /// Whether the layer's set did not fit and streams; when its last compute that freed room ended.
    var streaming = false
    var streamedUntil: Int64 = 0

    init(gate: Int64) { self.gate = gate; gpu = gate }

    /// The GPU idles until `time` if it is later, counted as stall.
    @inline(__always) mutating func wait(until time: Int64, _ counters: inout ReplayCounters) {
        if time > gpu { counters.stallNanoseconds += time - gpu; gpu = time }
    }
}
