/// Layers whose expert set does not fit the budget (a long prefill, a large batch, a per-layer share of one expert as
/// mixtral-offloading's baseline uses): the experts stream through the budget, each loaded, computed and freed in
/// turn, instead of the run being refused (SIMULATION.md: experts are pinned while they fit).
extension ReplayCore {
    /// Room for a demand copy of `e`: evicts as usual; when every resident expert is pinned, the layer streams: the
    /// earliest-landing outstanding miss is computed and unpinned (with the hits computed so far), and freed once
    /// done, until there is room. The copy is then sent no earlier than the last compute that freed room.
    /// - Returns: when to send the copy (copies it evicted still arriving are in `awaited`).
    @inline(__always)
    mutating func roomForDemand(_ e: Int32, bytes: Int, _ pins: PinSet, _ set: Range<Int>, _ plan: PlanColumns,
                                before a: Int, _ layer: inout LayerProgress) -> Int64 {
        let found = makeRoom(for: e, bytes: bytes, pins, at: layer.gate, demand: true)
        if found && !layer.streaming { return layer.gate }
        return streamUntilRoom(for: e, bytes: bytes, pins, set, plan, before: a, &layer, found: found)
    }

    /// The slow path of `roomForDemand`, out of line so that the replay loop's common path stays small.
    @inline(never)
    private mutating func streamUntilRoom(for e: Int32, bytes: Int, _ pins: PinSet, _ set: Range<Int>, _ plan: PlanColumns,
                                          before a: Int, _ layer: inout LayerProgress, found first: Bool) -> Int64 {
        var found = first
        while !found {
            let streamedOne = streamOne(set, plan, before: a, &layer)
            found = makeRoom(for: e, bytes: bytes, pins, at: layer.streamedUntil, demand: true)
            guard !found else { break }
            // A policy that never evicts: free a computed expert, one the policy keeps for the run (a placed
            // expert) only when nothing is left to stream.
            var done: Int32?
            for x in streamed.elements where memory.isResident(x) && !policy.keepsForRun(x) { done = x; break }
            if done == nil && !streamedOne { for x in streamed.elements where memory.isResident(x) { done = x; break } }
            if let done {
                memory.release(done)
                policy.didEvict(done)
                if Sink.isEnabled { sink.record(.evict(expert: Int(done)), at: layer.streamedUntil) }
                found = makeRoom(for: e, bytes: bytes, pins, at: layer.streamedUntil, demand: true)
            } else {
                precondition(streamedOne, "a budget below one expert passed validation")
            }
        }
        if !layer.streaming { return layer.gate }
        advanceLink(to: layer.streamedUntil)  // the copy is sent once the room it takes is free
        return layer.streamedUntil
    }

    /// Frees pinned experts of the layer for eviction: the hits already computed (held hits are computed now, at the
    /// start of streaming); else a hit not yet reached, computed now (it is resident: no wait); else the outstanding
    /// miss that lands first, computed when it lands.
    /// - Returns: false when there was nothing left to compute.
    private mutating func streamOne(_ set: Range<Int>, _ plan: PlanColumns, before a: Int, _ layer: inout LayerProgress) -> Bool {
        if !layer.streaming {
            layer.streaming = true
            computeHeldHits(plan, &layer)
            layer.streamedUntil = layer.gpu
            streamed.removeAll()
            for h in set.lowerBound..<a where memory.isResident(plan.accessExpert[h]) && !misses.contains(plan.accessExpert[h]) {
                pins[Int(plan.accessExpert[h])] = 0
                streamed.append(plan.accessExpert[h])
            }
            if !streamed.isEmpty { return true }
        }
        for h in (a + 1)..<set.upperBound {
            let e = plan.accessExpert[h]
            guard memory.isResident(e), pins[Int(e)] == epoch, !misses.contains(e), !streamed.contains(e, from: 0) else { continue }
            if Predictor.isEnabled && book.state[Int(e)] != PrefetchBook.none {
                // A prefetch not yet landed is settled now, as a late miss to wait for; one that landed is a hit.
                if let copy = settlePrefetched(e, at: layer.gate) {
                    if Sink.isEnabled { sink.record(.miss(expert: Int(e)), at: layer.gate) }
                    misses.append(expert: e, tokens: plan.accessTokens[h], copy: copy)
                    continue
                }
            }
            policy.didAccess(e, at: h)
            if Sink.isEnabled { sink.record(.hit(expert: Int(e)), at: layer.gate) }
            layer.gpu = compute(e, tokens: plan.accessTokens[h], from: layer.gpu)
            free(e, &layer)
            return true
        }
        guard misses.count > 0 else { return false }
        if tiered && !reads.isEmpty { settleReads(&layer) }
        resolveLandings()
        misses.sortByLanding()
        let first = misses[0]
        layer.wait(until: first.landsAt, &counters)
        layer.gpu = compute(first.expert, tokens: first.tokens, from: layer.gpu)
        free(first.expert, &layer)
        misses.removeFirst()
        counters.misses += 1  // no longer in `misses` when the layer counts them
        return true
    }

    /// Marks a computed expert of a streaming layer as done: unpinned, and free to go once the GPU is past it.
    private mutating func free(_ e: Int32, _ layer: inout LayerProgress) {
        pins[Int(e)] = 0
        streamed.append(e)
        layer.streamedUntil = layer.gpu
    }
}
