/// The tiers below the GPU when host memory holds only some experts and an SSD holds them all (`MemoryTiers`,
/// docs/tiers.md): host memory as a cache of experts under a registry eviction rule (`HostEviction`; LRU unless
/// set), filled from the SSD over its own link (processor sharing over the drive's queue depth, as `Link`). A GPU
/// copy reads the expert from here; one that is not here is read from the SSD first and its GPU copy starts when
/// the read lands.
///
/// Rules (docs/simulation.md, "Memory tiers"): the host tier starts full, with experts in flat-id order; a read is
/// admitted when it is issued (its bytes count from then), evicting the rule's victims among experts whose own read
/// has landed, that no copy of this layer asked for and whose GPU prefetch is not outstanding; when every expert in
/// host memory is still arriving, the read bypasses the host cache (a staging buffer: nothing is admitted). A
/// demand copy holds no host memory once issued (its layer keeps the expert). Raw buffers, like `ExpertMemory`.
final class HostTier {
    let memory: ExpertMemory
    let link: Link
    /// One expert's read from the SSD alone on the link.
    let readDuration: Int64
    let expertBytes: Int
    /// Per expert: the read still arriving (its ticket), else -1; and when its read landed (0: there from the start;
    /// `Int64.max` while a read whose landing the link has not simulated is under way).
    private let reading: UnsafeMutablePointer<Link.Ticket>
    private let landedAt: UnsafeMutablePointer<Int64>
    /// The experts whose read holds a ticket, settled before victims are chosen (a few: reads under way).
    private var arriving = ExpertList(capacity: 64)
    private var settledAt: Int64 = -1
    /// Per expert, the layer (the replay's epoch) that last asked for it: host memory keeps it for that layer.
    private let askedIn: UnsafeMutablePointer<Int32>
    /// The current layer's epoch (`ReplayCore.epoch`).
    var layer: Int32 = 0
    /// The eviction rule (none of the host rules reads the access index its hooks take: they are passed 0).
    private let policy: HostCache
    private let policyObject: AnyObject?  // keeps the rule `policy` views alive
    let experts: Int
    var counters = TierCounters()
    /// For a timeline (`recordsEvents`): evictions with their times, and the SSD link's reports, until drained (the
    /// link's own list must be empty before it issues a ticket).
    var evicted: [(Int32, Int64)] = []
    var reported: [Link.Report] = []
    let recordsEvents: Bool

    /// The GPU's prefetch book's columns (`PrefetchBook.copyOutstanding`): an expert whose prefetch copy is
    /// outstanding is not evicted here. The replay core holds the book as long as this tier.
    private let prefetchState: UnsafeMutablePointer<UInt8>
    private let prefetchLands: UnsafeMutablePointer<Int64>

    /// - Parameter starts: the experts host memory may hold at the start (a GPU of several: those its map gives it).
    init(experts: Int, capacityBytes: Int, expertBytes: Int, readDuration: Int64, link: Link, book: PrefetchBook,
         eviction: HostEviction = .lru, starts: (Int32) -> Bool = { _ in true }) {
        prefetchState = book.state
        prefetchLands = book.landTime
        self.experts = experts
        recordsEvents = link.reporting == .all
        self.expertBytes = expertBytes
        self.readDuration = readDuration
        self.link = link
        memory = ExpertMemory(experts: experts, partitionOf: Array(repeating: 0, count: experts), capacities: [capacityBytes])
        var owner: AnyObject?
        policy = HostCache(eviction, CacheShape(experts: experts, capacity: capacityBytes, expertBytes: expertBytes), owner: &owner)
        policyObject = owner
        reading = .allocate(capacity: experts)
        reading.initialize(repeating: -1, count: experts)
        landedAt = .allocate(capacity: experts)
        landedAt.initialize(repeating: 0, count: experts)
        askedIn = .allocate(capacity: experts)
        askedIn.initialize(repeating: 0, count: experts)
        // Full from the start, in flat-id order (layer by layer): loaded before the first step.
        for e in 0..<Int32(experts) where starts(e) && memory.fits(expertBytes, in: 0) {
            memory.admit(e, bytes: expertBytes)
            policy.didInsert(e, at: 0)
        }
        counters.capacityBytes = capacityBytes
        counters.peakBytes = memory.peakUsed
    }

    deinit {
        reading.deallocate(); landedAt.deallocate(); askedIn.deallocate(); arriving.deallocate()
    }

    /// Whether `e` is in host memory, its read landed by `time`.
    @inline(__always) func holds(_ e: Int32, at time: Int64) -> Bool {
        memory.isResident(e) && landing(of: e) <= time
    }

    /// Whether `e` is in host memory or on its way there.
    @inline(__always) func admitted(_ e: Int32) -> Bool { memory.isResident(e) }

    /// The read of `e` still arriving, if any.
    @inline(__always) func pendingRead(of e: Int32) -> Link.Ticket? {
        let t = reading[Int(e)]
        return t >= 0 ? t : nil
    }

    /// When `e`'s read lands (`Int64.max` while the link has not simulated it: call `resolve` first).
    @inline(__always) func landing(of e: Int32) -> Int64 {
        let t = reading[Int(e)]
        guard t >= 0 else { return landedAt[Int(e)] }
        let end = link.end(of: t)
        guard end >= 0 else { return .max }
        settle(e, landed: end)
        return end
    }

    /// When `e`'s read lands, simulating the SSD link as far as needed: call once every read that can share the
    /// link with it has been issued.
    func resolve(_ e: Int32) -> Int64 {
        let t = reading[Int(e)]
        guard t >= 0 else { return landedAt[Int(e)] }
        let end = link.landing(of: t)
        settle(e, landed: end)
        return end
    }

    private func settle(_ e: Int32, landed end: Int64) {
        link.release(reading[Int(e)])
        reading[Int(e)] = -1
        landedAt[Int(e)] = end
    }

    /// A GPU copy or host computation asks for `e`: kept for the rest of the layer, and, when it is here or on its
    /// way, an access for the eviction rule.
    @inline(__always) func use(_ e: Int32) {
        askedIn[Int(e)] = layer
        guard memory.isResident(e) else { return }
        policy.didAccess(e, at: 0)
    }

    /// Reads `e` from the SSD at `time`, admitting it (evicting the rule's victims among experts that have landed,
    /// that no GPU copy or host computation of this layer asked for, and whose GPU prefetch is not outstanding).
    /// - Returns: the read (the caller releases a bypassing read's copy once it knows its landing), or nil when no
    ///   room could be made and `bypass` is false (a prefetch into
    ///   host memory is then not issued).
    func read(_ e: Int32, at time: Int64, bypass: Bool) -> (copy: Link.Copy, admitted: Bool)? {
        precondition(!memory.isResident(e), "read an expert already in host memory")
        advance(to: time)  // every read landing by `time` is known, so it may be evicted
        settleKnownReads(at: time)
        policy.willInsert(e)
        let pinned = PinSet(stamps: askedIn, epoch: layer, landTime: landedAt, now: time)
        while !memory.fits(expertBytes, in: 0), let victim = policy.victim(pinned: pinned) {
            // A GPU prefetch still reads it (queued, or on the link): kept, and held for the rest of the layer.
            if PrefetchBook.copyOutstanding(victim, at: time, state: prefetchState, landTime: prefetchLands) {
                askedIn[Int(victim)] = layer
                continue
            }
            policy.didEvict(victim)
            memory.release(victim)
            counters.evictions += 1
            if recordsEvents { evicted.append((victim, time)) }
        }
        let admitted = memory.fits(expertBytes, in: 0)
        guard admitted || bypass else { return nil }
        let copy = link.send(expert: e, duration: readDuration, at: time)
        stash()
        if admitted {
            memory.admit(e, bytes: expertBytes)
            policy.didInsert(e, at: 0)
            // One server fixes the landing at once; several leave a ticket to ask when every read is issued.
            if copy.ticket >= 0 {
                reading[Int(e)] = copy.ticket
                landedAt[Int(e)] = .max
                arriving.append(e)
            } else {
                landedAt[Int(e)] = copy.fixedLanding
            }
            counters.peakBytes = max(counters.peakBytes, memory.used(in: 0))
        } else {
            counters.bypassReads += 1
        }
        counters.bytesRead += expertBytes
        return (copy, admitted)
    }

    /// Simulates the SSD link up to `time`, keeping its reports for a timeline (`Link.advance` hands them over as it
    /// goes: they are not left in its list).
    @inline(__always) func advance(to time: Int64) {
        guard time > link.clock else { return }  // advanced there already (every gate advances it)
        if recordsEvents { link.advance(to: time) { reported.append($0) } } else { link.advance(to: time) }
    }

    /// Moves the link's reports to `reported`.
    func stash() {
        guard recordsEvents else { return }
        reported.append(contentsOf: link.reports.elements)
        link.drained()
    }

    /// Settles every read whose landing the link has simulated, so that `landedAt` is exact for the pin test. Once
    /// per time: the link was advanced to it, so every landing by then is known, and reads issued since land later.
    private func settleKnownReads(at time: Int64) {
        guard time != settledAt else { return }
        settledAt = time
        var kept = 0
        for i in 0..<arriving.count {
            let e = arriving[i]
            if reading[Int(e)] >= 0 { _ = landing(of: e) }
            if reading[Int(e)] >= 0 { arriving[kept] = e; kept += 1 }
        }
        arriving.truncate(to: kept)
    }
}

/// What the host tier counted (docs/metrics.md, "Memory tiers").
public struct TierCounters: Sendable, Equatable {
    /// The host tier's capacity for experts.
    public var capacityBytes = 0
    /// GPU copies (demand or prefetch) and host computations that found their expert in host memory, and those that
    /// read it from the SSD first.
    public var hits = 0
    public var misses = 0
    /// Of those asked for, experts whose read into host memory was still arriving (counted in neither).
    public var late = 0
    /// Prefetches into host memory (SSD reads no GPU copy waited for when they were issued).
    public var prefetchReads = 0
    /// Reads with no room in host memory: every expert there was still arriving.
    public var bypassReads = 0
    public var evictions = 0
    public var bytesRead = 0
    /// Reads from the SSD: one per miss (admitted or bypassing) and per prefetch into host memory.
    public var reads: Int { misses + prefetchReads }
    public var peakBytes = 0
    /// Nanoseconds with at least one read on the SSD link.
    public var linkBusyNanoseconds: Int64 = 0
}
