/// Three tiers (docs/tiers.md): a GPU copy or a host computation whose expert is not in host memory waits for its
/// read from the SSD. Out of line, so that two tiers (no `host`) keep the replay loop as it was.
extension ReplayCore {
    /// Whether the demand copy of `e`, sent at `time`, can read it from host memory now (its read landed): a host
    /// hit, which makes `e` the most recently used there.
    @inline(never)
    mutating func hostServes(_ e: Int32, at time: Int64) -> Bool {
        let host = host!
        host.advance(to: time)
        if Sink.isEnabled { drainReads() }
        guard host.holds(e, at: time) else { return false }
        host.use(e)
        host.counters.hits += 1
        return true
    }

    /// The demand copy of `e` waits for its expert's read from the SSD (one already under way, or a new one issued
    /// at `time`): sent when the read lands (`settleReads`). Returns a placeholder the layer's miss list holds until
    /// then.
    @inline(never)
    mutating func awaitRead(_ e: Int32, duration: Int64, bytes: Int, at time: Int64) -> Link.Copy {
        reads.copies.append(PendingRead(expert: e, tokens: 0, bytes: bytes, duration: duration,
                                        read: readForUse(e, at: time), after: Array(awaited.elements), at: time))
        awaited.removeAll()
        return Link.Copy(landing: .max)
    }

    /// A host computation of `e` (CPU fallback) that finds it on the SSD: computed once its read lands.
    @inline(never)
    mutating func awaitReadForHost(_ e: Int32, tokens: Int32, at gate: Int64) {
        reads.computes.append(PendingRead(expert: e, tokens: tokens, bytes: 0, duration: 0,
                                          read: readForUse(e, at: gate), after: [], at: gate))
    }

    /// The read `e` waits for: its read into host memory still arriving (late), or a new one.
    private mutating func readForUse(_ e: Int32, at time: Int64) -> PendingRead.Source {
        let host = host!
        host.use(e)
        if host.admitted(e) {
            host.counters.late += 1
            return .host
        }
        host.counters.misses += 1
        let (copy, admitted) = host.read(e, at: time, bypass: true)!
        if Sink.isEnabled { drainReads() }
        return admitted ? .host : .bypass(copy)
    }

    /// A proposal for `e` whose expert is not in host memory: prefetched into host memory instead (when there is
    /// room), and no GPU prefetch is issued for it now. - Returns: whether the GPU prefetch may go ahead.
    @inline(never)
    mutating func prefetchFromSSD(_ e: Int32, at gate: Int64) -> Bool {
        let host = host!
        if host.holds(e, at: gate) { return true }
        if !host.admitted(e), host.read(e, at: gate, bypass: false) != nil { host.counters.prefetchReads += 1 }
        if Sink.isEnabled { drainReads() }
        return false
    }

    /// Once every read of the layer has been issued: asks the SSD when each read waited for lands, sends the GPU
    /// copies that waited for them in landing order (ties in the order they were asked for), each at its read's
    /// landing, and runs the host computations that waited, in the same order, on the CPU after those already
    /// queued there.
    @inline(never)
    mutating func settleReads(_ layer: inout LayerProgress) {
        let host = host!
        for i in reads.copies.indices { reads.copies[i].lands = landing(of: reads.copies[i], host) }
        for i in reads.computes.indices { reads.computes[i].lands = landing(of: reads.computes[i], host) }
        if Sink.isEnabled { drainReads() }
        for r in PendingRead.inLandingOrder(reads.copies) {
            advanceLink(to: r.lands)
            let copy = r.after.withUnsafeBufferPointer { link.send(expert: r.expert, duration: r.duration, at: r.lands, after: $0) }
            counters.bytesH2D += r.bytes
            drainLink()
            misses.replacePlaceholder(of: r.expert, with: copy)
        }
        for r in PendingRead.inLandingOrder(reads.computes) {
            runOnHost(r.expert, tokens: r.tokens, from: max(r.at + cost.activationTransfer(tokens: r.tokens), r.lands), &layer)
        }
        reads.copies.removeAll(keepingCapacity: true)
        reads.computes.removeAll(keepingCapacity: true)
    }

    /// Records the SSD link's reads and the host tier's evictions since the last drain, for a timeline.
    mutating func drainReads() {
        let host = host!
        host.stash()
        for r in host.reported {
            if r.start >= 0 { sink.record(.readStart(expert: Int(r.expert)), at: r.start) }
            if r.end >= 0 { sink.record(.readEnd(expert: Int(r.expert)), at: r.end) }
        }
        host.reported.removeAll()
        for (e, time) in host.evicted { sink.record(.hostEvict(expert: Int(e)), at: time) }
        host.evicted.removeAll()
    }

    private func landing(of r: PendingRead, _ host: HostTier) -> Int64 {
        switch r.read {
        case .host: return host.resolve(r.expert)
        case let .bypass(copy):
            let lands = host.link.landing(of: copy)
            host.link.release(copy)
            return lands
        }
    }
}

/// A GPU copy or a host computation waiting for an SSD read.
struct PendingRead {
    enum Source {
        /// The expert's read into host memory.
        case host
        /// A read that bypassed host memory (no room): its own copy on the SSD link.
        case bypass(Link.Copy)
    }
    let expert: Int32
    let tokens: Int32
    let bytes: Int
    let duration: Int64
    let read: Source
    /// Copies still arriving that the GPU copy evicted: it starts once they land.
    let after: [Link.Ticket]
    /// When it was asked for, and when its read lands.
    let at: Int64
    var lands: Int64 = 0

    /// `reads` by landing, equal landings in the order they were asked for.
    static func inLandingOrder(_ reads: [PendingRead]) -> [PendingRead] {
        reads.indices.sorted { (reads[$0].lands, $0) < (reads[$1].lands, $1) }.map { reads[$0] }
    }
}

/// The layer's GPU copies and host computations waiting for SSD reads.
struct PendingReads {
    var copies: [PendingRead] = []
    var computes: [PendingRead] = []
    var isEmpty: Bool { copies.isEmpty && computes.isEmpty }
}

extension MissList {
    /// Puts the copy of `e`'s miss in place of its placeholder (`ReplayCore.awaitRead`).
    mutating func replacePlaceholder(of e: Int32, with copy: Link.Copy) {
        for m in 0..<count where expert[m] == e && ticket[m] < 0 && landsAt[m] == .max {
            landsAt[m] = copy.fixedLanding
            ticket[m] = copy.ticket
            if copy.ticket >= 0 { pending += 1 }
            return
        }
        preconditionFailure("no miss waits for expert \(e)'s read")
    }
}
