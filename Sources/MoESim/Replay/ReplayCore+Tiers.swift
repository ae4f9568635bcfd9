/// Three tiers (docs/tiers.md): a GPU copy or a host computation whose expert is not in host memory waits for its
/// read from the SSD. Out of line, so that two tiers (no `host`) keep the replay loop as it was.
extension ReplayCore {
    /// A new layer's gate: host memory keeps what this layer asks for; reads landing by the gate land.
    @inline(never)
    mutating func openHostGate(_ gate: Int64) {
        let host = host!
        host.layer = epoch
        host.advance(to: gate)
        if Sink.isEnabled { drainReads() }
    }

    /// For a miss handler's choice: when host memory will hold `e` if it is asked for at `gate` (the gate when it is
    /// there; its read's landing when known; else the gate plus one read alone on the drive). Asks nothing.
    @inline(never)
    func hostReadyEstimate(_ e: Int32, at gate: Int64) -> Int64 {
        let host = host!
        guard !host.holds(e, at: gate) else { return gate }
        if host.admitted(e) {
            let lands = host.landing(of: e)
            if lands != .max { return max(gate, lands) }
        }
        return gate + host.readDuration
    }

    /// A GPU prefetch of `e` was queued: it reads `e` from host memory (an ask, and a host hit).
    @inline(never)
    mutating func prefetchReadsHost(_ e: Int32) {
        let host = host!
        host.use(e)
        host.counters.hits += 1
    }

    /// Whether the demand copy of `e`, sent at `time`, can read it from host memory now (its read landed): a host
    /// hit, which makes `e` the most recently used there.
    @inline(__always)
    mutating func hostServes(_ e: Int32, at time: Int64) -> Bool {
        let host = host!
        if time > host.link.clock { host.advance(to: time) }
        if Sink.isEnabled { drainReads() }
        guard host.holds(e, at: time) else { return false }
        host.use(e)
        host.counters.hits += 1
        return true
    }

    /// A demand copy of `e` at `time` with three tiers: nil when host memory holds `e` (the copy goes as with two
    /// tiers), else the placeholder of a copy that waits for its read (`awaitRead`). One call on the miss path.
    @inline(never)
    mutating func copyFromTiers(_ e: Int32, duration: Int64, bytes: Int, at time: Int64) -> Link.Copy? {
        hostServes(e, at: time) ? nil : awaitRead(e, duration: duration, bytes: bytes, at: time)
    }

    /// The demand copy of `e` waits for its expert's read from the SSD (one already under way, or a new one issued
    /// at `time`): sent when the read lands (`settleReads`). Returns a placeholder the layer's miss list holds until
    /// then.
    @inline(__always)
    mutating func awaitRead(_ e: Int32, duration: Int64, bytes: Int, at time: Int64) -> Link.Copy {
        let after = Int32(reads.after.count)
        reads.after.append(contentsOf: awaited.elements)
        awaited.removeAll()
        reads.copies.append(PendingRead(expert: e, tokens: 0, bytes: bytes, duration: duration, read: readForUse(e, at: time),
                                        after: after..<Int32(reads.after.count), miss: Int32(misses.count), at: time))
        return Link.Copy(landing: .max)
    }

    /// A host computation of `e` at the gate with three tiers: whether host memory holds `e` (it runs at once), else
    /// it waits for its read (`settleReads` runs it).
    @inline(never)
    mutating func hostComputes(_ e: Int32, tokens: Int32, at gate: Int64) -> Bool {
        if hostServes(e, at: gate) { return true }
        awaitReadForHost(e, tokens: tokens, at: gate)
        return false
    }

    /// A host computation of `e` (CPU fallback) that finds it on the SSD: computed once its read lands.
    @inline(__always)
    mutating func awaitReadForHost(_ e: Int32, tokens: Int32, at gate: Int64) {
        reads.computes.append(PendingRead(expert: e, tokens: tokens, bytes: 0, duration: 0, read: readForUse(e, at: gate),
                                          after: 0..<0, miss: -1, at: gate))
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
        for i in 0..<reads.copies.count { reads.copies[i].lands = landing(of: reads.copies[i], host) }
        for i in 0..<reads.computes.count { reads.computes[i].lands = landing(of: reads.computes[i], host) }
        if Sink.isEnabled { drainReads() }
        reads.copies.sortByLanding()
        reads.computes.sortByLanding()
        for i in 0..<reads.copies.count {
            let r = reads.copies[i]
            advanceLink(to: r.lands)
            let copy = link.send(expert: r.expert, duration: r.duration, at: r.lands,
                                 after: UnsafeBufferPointer(rebasing: reads.after.elements[Int(r.after.lowerBound)..<Int(r.after.upperBound)]))
            counters.bytesH2D += r.bytes
            drainLink()
            misses.replacePlaceholder(at: Int(r.miss), of: r.expert, with: copy)
        }
        for i in 0..<reads.computes.count {
            let r = reads.computes[i]
            let move = cost.activationTransfer(tokens: r.tokens)
            runOnHost(r.expert, from: max(r.at + move, r.lands), work: cost.hostExpertCompute(tokens: r.tokens), move: move, &layer)
        }
        reads.copies.removeAll()
        reads.computes.removeAll()
        reads.after.removeAll()
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
    /// Copies still arriving that the GPU copy evicted (their tickets in `PendingReads.after`): it starts once
    /// they land.
    let after: Range<Int32>
    /// Its entry in the layer's miss list (-1 for a host computation).
    let miss: Int32
    /// When it was asked for, and when its read lands.
    let at: Int64
    var lands: Int64 = 0

}

/// The layer's GPU copies and host computations waiting for SSD reads, and the tickets the copies wait for, in
/// raw buffers reused from layer to layer (no uniqueness checks on the miss path).
struct PendingReads {
    var copies: PendingList
    var computes: PendingList
    var after: ExpertList

    init(capacity: Int) {
        copies = PendingList(capacity: capacity)
        computes = PendingList(capacity: capacity)
        after = ExpertList(capacity: 4)
    }

    var isEmpty: Bool { copies.count == 0 && computes.count == 0 }

    /// Frees the buffers; the owner calls it once.
    func deallocate() { copies.deallocate(); computes.deallocate(); after.deallocate() }
}

/// A growable list of `PendingRead`s over raw memory (a plain value type: nothing to deinitialise).
struct PendingList {
    private var base: UnsafeMutablePointer<PendingRead>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        base = .allocate(capacity: self.capacity)
    }

    func deallocate() { base.deallocate() }

    subscript(i: Int) -> PendingRead {
        get { base[i] }
        nonmutating set { base[i] = newValue }
    }

    mutating func append(_ r: PendingRead) {
        if count == capacity {
            let grown = UnsafeMutablePointer<PendingRead>.allocate(capacity: capacity * 2)
            grown.moveInitialize(from: base, count: count)
            base.deallocate()
            base = grown
            capacity *= 2
        }
        (base + count).initialize(to: r)
        count += 1
    }

    mutating func removeAll() { count = 0 }

    /// Orders the list by landing, equal landings in the order they were asked for (a stable insertion sort: a
    /// layer's few reads, often in order already).
    func sortByLanding() {
        for i in 1..<max(1, count) where base[i - 1].lands > base[i].lands {
            var j = i
            while j > 0 && base[j - 1].lands > base[j].lands { swap(&base[j - 1], &base[j]); j -= 1 }
        }
    }
}

extension MissList {
    /// Puts the copy of `e`'s miss, appended as entry `index`, in place of its placeholder (`ReplayCore.awaitRead`).
    mutating func replacePlaceholder(at index: Int, of e: Int32, with copy: Link.Copy) {
        func waits(_ m: Int) -> Bool { m < count && self[m].expert == e && self[m].ticket < 0 && self[m].landsAt == .max }
        guard let m = waits(index) ? index : (0..<count).first(where: waits) else {
            preconditionFailure("no miss waits for expert \(e)'s read")
        }
        self[m].landsAt = copy.fixedLanding
        self[m].ticket = copy.ticket
        if copy.ticket >= 0 { pending += 1 }
    }
}
