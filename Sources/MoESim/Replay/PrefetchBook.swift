
/// How prefetch copies ended, and how good the predictions were (docs/metrics.md).
public struct PrefetchCounters: Sendable, Equatable {
    public var issued = 0
    /// Landed before the gate that asked for the expert: that access was a hit.
    public var useful = 0
    /// Still queued or on the link when the gate asked: not a hit; the GPU waited for it.
    public var late = 0
    /// Evicted, or never asked for before the replay ended.
    public var wasted = 0
    /// Still queued when its layer ended, or evicted before it started: no bytes moved.
    public var cancelled = 0
    public var bytesPrefetch = 0
    public var bytesWasted = 0
    /// Proposals that `prefetch.admission` left unissued (not counted in `issued`).
    public var refused = 0
    /// Σ|predicted ∩ actual|, Σ|predicted|, Σ|actual| over the layers predictions were made for.
    public var predictedCorrect = 0
    public var predicted = 0
    public var actual = 0
}

/// The ledger of prefetch copies: each one is queued, then sent (committed, or started on its own), then settled
/// exactly once as useful, late, wasted or cancelled, so that `useful + late + wasted + cancelled == issued`
/// (a property test holds every strategy to it).
///
///     book.queue(e, ticket: t)           // memory already reserved, the copy queued on the link
///     book.settleAccess(e, at: gate)     // when a gate asks for e
///
/// The book holds each prefetch's link ticket until the prefetch is settled, and hands it to the caller then (to
/// wait for, release, or cancel). Per-expert state lives in raw buffers indexed by flat id, like the rest of the
/// replay loop's state.
final class PrefetchBook {
    /// Queued: may still be cancelled, no bytes moved. Sent: committed or under way, its bytes move.
    static let none: UInt8 = 0, queued: UInt8 = 1, sent: UInt8 = 2

    /// How a prefetched expert that a gate asks for ends; each case hands over the copy's ticket.
    enum Access {
        /// It had landed: a hit.
        case useful(ticket: Link.Ticket)
        /// It is on its way: late; the GPU waits for it.
        case late(ticket: Link.Ticket)
        /// It had not been sent: late; the caller commits it now.
        case queued(ticket: Link.Ticket)
    }

    /// What an eviction ends: a queued copy (to cancel), a sent one still arriving (to wait for), or one landed.
    enum Eviction { case none, queued(Link.Ticket), arriving(Link.Ticket), landed(Link.Ticket) }

    let state: UnsafeMutablePointer<UInt8>
    /// When each prefetch lands: `Int64.max` while queued by a predictor that never cancels (pinned while queued) or
    /// sent with its landing not yet known, 0 when none is open. Read by `PinSet`: an expert whose copy is still
    /// arriving is not evicted.
    let landTime: UnsafeMutablePointer<Int64>
    /// The link's ticket of each open prefetch (-1 when none).
    let ticket: UnsafeMutablePointer<Link.Ticket>
    /// Stamp of the step a prediction for this expert was made in (so one expert counts once per step).
    private let predictedInStep: UnsafeMutablePointer<Int32>
    private let experts: Int
    private(set) var counters = PrefetchCounters()
    /// Bytes held by prefetches not yet settled (queued or awaiting use): capped by the prefetch buffer.
    private(set) var heldBytes = 0
    let bytesPerCopy: Int
    /// Experts predicted per layer for this step, and for the next (proposed across the step boundary).
    private var predictedPerLayer: UnsafeMutablePointer<Int>
    private var predictedNextPerLayer: UnsafeMutablePointer<Int>
    /// The layer of each flat id (a lookup instead of a division in the per-proposal path).
    private let layerOf: UnsafeMutablePointer<Int32>
    /// Per target layer, the prefetches still queued (neither sent nor settled): what a layer's end may cancel.
    private let queuedFor: UnsafeMutablePointer<Int32>
    private let layers: Int
    private var stepStamp: Int32 = 0

    var bytesPrefetch: Int { counters.bytesPrefetch }

    init(experts: Int, layers: Int, bytesPerCopy: Int) {
        self.experts = experts
        self.bytesPerCopy = bytesPerCopy
        state = .allocate(capacity: experts); state.initialize(repeating: 0, count: experts)
        landTime = .allocate(capacity: experts); landTime.initialize(repeating: 0, count: experts)
        ticket = .allocate(capacity: experts); ticket.initialize(repeating: -1, count: experts)
        predictedInStep = .allocate(capacity: experts); predictedInStep.initialize(repeating: 0, count: experts)
        self.layers = layers
        predictedPerLayer = .allocate(capacity: layers); predictedPerLayer.initialize(repeating: 0, count: layers)
        predictedNextPerLayer = .allocate(capacity: layers); predictedNextPerLayer.initialize(repeating: 0, count: layers)
        queuedFor = .allocate(capacity: max(1, layers)); queuedFor.initialize(repeating: 0, count: max(1, layers))
        layerOf = .allocate(capacity: experts)
        let perLayer = experts / max(1, layers)
        for e in 0..<experts { layerOf[e] = Int32(e / max(1, perLayer)) }
    }

    deinit {
        state.deallocate(); landTime.deallocate(); ticket.deallocate(); predictedInStep.deallocate()
        predictedPerLayer.deallocate(); predictedNextPerLayer.deallocate(); layerOf.deallocate(); queuedFor.deallocate()
    }

    func startStep() {
        stepStamp &+= 1
        swap(&predictedPerLayer, &predictedNextPerLayer)
        predictedNextPerLayer.update(repeating: 0, count: layers)
    }

    /// Counts a proposal made at `layer` for prediction quality (each expert once per step); a proposal for a layer
    /// at or before it is for the next step.
    @inline(__always)
    func notePrediction(_ e: Int32, madeAt layer: Int) {
        let target = Int(layerOf[Int(e)])
        if target > layer {  // this step: the common case
            guard predictedInStep[Int(e)] != stepStamp else { return }
            predictedInStep[Int(e)] = stepStamp
            predictedPerLayer[target] &+= 1
        } else {
            guard predictedInStep[Int(e)] != stepStamp &+ 1 else { return }
            predictedInStep[Int(e)] = stepStamp &+ 1
            predictedNextPerLayer[target] &+= 1
        }
    }

    /// At a layer's gate: how many of its experts were predicted this step.
    @inline(__always)
    func scorePredictions(layer: Int, set: UnsafeBufferPointer<Int32>) {
        let predicted = predictedPerLayer[layer]
        guard predicted > 0 else { return }
        var correct = 0
        for e in set where predictedInStep[Int(e)] == stepStamp { correct &+= 1 }
        counters.predictedCorrect &+= correct
        counters.predicted &+= predicted
        counters.actual &+= set.count
    }

    /// Records `e` as queued on the link with `ticket`; `pinned`: it may not be evicted while queued (a predictor
    /// whose copies are never cancelled).
    @inline(__always) func queue(_ e: Int32, ticket t: Link.Ticket, pinned: Bool) {
        state[Int(e)] = PrefetchBook.queued
        ticket[Int(e)] = t
        landTime[Int(e)] = pinned ? .max : 0
        queuedFor[Int(layerOf[Int(e)])] &+= 1
        counters.issued += 1
        heldBytes += bytesPerCopy
    }

    /// A queued prefetch is sent (committed, or started): its bytes move, and it is pinned until it lands at
    /// `landsAt` (-1: not known yet).
    @inline(__always) func sent(_ e: Int32, ticket t: Link.Ticket, landsAt: Int64 = -1) {
        guard state[Int(e)] == PrefetchBook.queued && ticket[Int(e)] == t else { return }
        state[Int(e)] = PrefetchBook.sent
        landTime[Int(e)] = landsAt >= 0 ? landsAt : .max
        queuedFor[Int(layerOf[Int(e)])] &-= 1
        counters.bytesPrefetch += bytesPerCopy
    }

    /// The link reports copy `t` of `e`: it `started` (a prefetch started on its own is sent), and lands at
    /// `landsAt` when that is known (-1 otherwise). Copies the book does not hold (settled, cancelled) are ignored.
    @inline(__always) func reported(_ e: Int32, ticket t: Link.Ticket, started: Bool, landsAt: Int64) {
        guard ticket[Int(e)] == t else { return }
        if started && state[Int(e)] == PrefetchBook.queued {
            state[Int(e)] = PrefetchBook.sent
            landTime[Int(e)] = .max
            queuedFor[Int(layerOf[Int(e)])] &-= 1
            counters.bytesPrefetch += bytesPerCopy
        }
        if landsAt >= 0 && state[Int(e)] == PrefetchBook.sent { landTime[Int(e)] = landsAt }
    }

    /// Closes `e`'s account: no state, no pin, no ticket.
    @inline(__always) private func close(_ e: Int32) {
        if state[Int(e)] == PrefetchBook.queued { queuedFor[Int(layerOf[Int(e)])] &-= 1 }
        state[Int(e)] = PrefetchBook.none
        landTime[Int(e)] = 0
        ticket[Int(e)] = -1
        heldBytes -= bytesPerCopy
    }

    /// Settles a prefetched expert that a gate asks for at `time`: useful if it landed at or before the gate, late
    /// otherwise (on its way, or still queued). From now on its layer pins it, and the layer waits for the copy.
    @inline(__always) func settleAccess(_ e: Int32, at time: Int64) -> Access {
        let s = state[Int(e)], land = landTime[Int(e)], t = ticket[Int(e)]
        close(e)
        if s == PrefetchBook.queued {
            counters.late += 1
            return .queued(ticket: t)
        }
        if land <= time {
            counters.useful += 1
            return .useful(ticket: t)
        }
        counters.late += 1
        return .late(ticket: t)
    }

    /// Settles a queued prefetch whose layer has passed before it was sent: cancelled, no bytes moved.
    /// - Returns: its ticket, to cancel on the link.
    @inline(__always) func cancel(_ e: Int32) -> Link.Ticket {
        let t = ticket[Int(e)]
        close(e)
        counters.cancelled += 1
        return t
    }

    /// Whether a prefetch copy of `e` is queued, or sent and not landed by `time` (its landing unknown counts as
    /// not landed): host memory holds its source until then. Static over the book's columns, so that the host tier
    /// reads them without a counted reference to the book on its eviction path.
    @inline(__always)
    static func copyOutstanding(_ e: Int32, at time: Int64, state: UnsafeMutablePointer<UInt8>,
                                landTime: UnsafeMutablePointer<Int64>) -> Bool {
        let s = state[Int(e)]
        return s == PrefetchBook.queued || (s == PrefetchBook.sent && landTime[Int(e)] > time)
    }

    /// A proposal that admission left unissued.
    @inline(__always) func refused() { counters.refused += 1 }

    /// The layer of flat id `e`.
    @inline(__always) func layer(of e: Int32) -> Int { Int(layerOf[Int(e)]) }

    /// Whether a prefetch for layer `l` is still queued (a layer's end has something to cancel).
    @inline(__always) func hasQueued(for l: Int) -> Bool { queuedFor[l] > 0 }

    /// Settles a prefetched expert being evicted at `time` before any use: a queued copy is cancelled, a sent one
    /// wasted (still arriving, or landed). Inlined for MoE-Prefetch, which evicts a prefetch on nearly every copy;
    /// the other predictors, which rarely do, pay about 2% in their loop's registers (docs/performance.md).
    @inline(__always) func settleEviction(_ e: Int32, at time: Int64) -> Eviction {
        let t = ticket[Int(e)], land = landTime[Int(e)]
        switch state[Int(e)] {
        case PrefetchBook.queued:
            close(e)
            counters.cancelled += 1
            return .queued(t)
        case PrefetchBook.sent:
            close(e)
            counters.wasted += 1
            counters.bytesWasted += bytesPerCopy
            return land > time ? .arriving(t) : .landed(t)
        default:
            return .none
        }
    }

    /// At the end of the replay, prefetched experts never asked for are wasted, and prefetches still queued (for
    /// a step that never came) are cancelled.
    func finish() {
        for e in 0..<experts where state[e] != PrefetchBook.none {
            if state[e] == PrefetchBook.sent {
                counters.wasted += 1
                counters.bytesWasted += bytesPerCopy
            } else {
                counters.cancelled += 1
            }
            close(Int32(e))
        }
    }
}
