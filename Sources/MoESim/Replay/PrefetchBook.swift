
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
    /// Σ|predicted ∩ actual|, Σ|predicted|, Σ|actual| over the layers predictions were made for.
    public var predictedCorrect = 0
    public var predicted = 0
    public var actual = 0
}

/// The ledger of prefetch copies: each one is queued, then started, then settled exactly once as useful, late,
/// wasted or cancelled, so `useful + late + wasted + cancelled == issued` holds by construction.
///
///     book.queue(e, ticket: t)           // memory already reserved, the copy queued on the link
///     book.settleAccess(e, at: gate)     // when a gate asks for e
///
/// Per-expert state lives in raw buffers indexed by flat id, like the rest of the replay loop's state.
final class PrefetchBook {
    static let none: UInt8 = 0, queued: UInt8 = 1, awaitingUse: UInt8 = 2

    /// How a prefetched expert that a gate asks for ends.
    enum Access {
        /// It had landed: a hit.
        case useful
        /// It is on the link: late; the GPU waits for `ticket` (its landing is `landTime` when known).
        case late(ticket: Link.Ticket)
        /// It had not started: late; the caller sends `ticket` now as a demand copy.
        case queued(ticket: Link.Ticket)
    }

    let state: UnsafeMutablePointer<UInt8>
    /// When each prefetch landed, `Int64.max` while it is on the link with its landing not yet known, 0 when none.
    let landTime: UnsafeMutablePointer<Int64>
    /// The link's ticket of each prefetch queued or on the link (-1 when none).
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
    private let layers: Int
    private var stepStamp: Int32 = 0

    var bytesPrefetch: Int {
        get { counters.bytesPrefetch }
        set { counters.bytesPrefetch = newValue }
    }

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
        layerOf = .allocate(capacity: experts)
        let perLayer = experts / max(1, layers)
        for e in 0..<experts { layerOf[e] = Int32(e / max(1, perLayer)) }
    }

    deinit {
        state.deallocate(); landTime.deallocate(); ticket.deallocate(); predictedInStep.deallocate()
        predictedPerLayer.deallocate(); predictedNextPerLayer.deallocate(); layerOf.deallocate()
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

    /// Records `e` as queued on the link with `ticket`.
    @inline(__always) func queue(_ e: Int32, ticket t: Link.Ticket) {
        state[Int(e)] = PrefetchBook.queued
        ticket[Int(e)] = t
        counters.issued += 1
        heldBytes += bytesPerCopy
    }

    /// Settles a prefetched expert that a gate asks for at `time`: useful if it landed at or before the gate, late
    /// otherwise (still on the link, or not started).
    @inline(__always) func settleAccess(_ e: Int32, at time: Int64) -> Access {
        let s = state[Int(e)]
        state[Int(e)] = PrefetchBook.none
        heldBytes -= bytesPerCopy
        if s == PrefetchBook.queued {
            counters.late += 1
            return .queued(ticket: ticket[Int(e)])
        }
        if landTime[Int(e)] <= time {
            counters.useful += 1
            return .useful
        }
        counters.late += 1
        return .late(ticket: ticket[Int(e)])
    }

    /// Settles a queued prefetch whose layer has passed before it started: cancelled, no bytes moved.
    @inline(__always) func cancel(_ e: Int32) {
        state[Int(e)] = PrefetchBook.none
        ticket[Int(e)] = -1
        heldBytes -= bytesPerCopy
        counters.cancelled += 1
    }

    /// The layer of flat id `e`.
    @inline(__always) func layer(of e: Int32) -> Int { Int(layerOf[Int(e)]) }

    /// Settles a prefetched expert being evicted before any use.
    func settleEviction(_ e: Int32) {
        switch state[Int(e)] {
        case PrefetchBook.queued: counters.cancelled += 1
        case PrefetchBook.awaitingUse: counters.wasted += 1; counters.bytesWasted += bytesPerCopy
        default: return
        }
        state[Int(e)] = PrefetchBook.none
        heldBytes -= bytesPerCopy
    }

    /// At the end of the replay, prefetched experts never asked for are wasted, and prefetches still queued (for
    /// a step that never came) are cancelled.
    func finish() {
        for e in 0..<experts where state[e] != PrefetchBook.none {
            if state[e] == PrefetchBook.awaitingUse {
                counters.wasted += 1
                counters.bytesWasted += bytesPerCopy
            } else {
                counters.cancelled += 1
            }
            state[e] = PrefetchBook.none
            heldBytes -= bytesPerCopy
        }
        precondition(counters.useful + counters.late + counters.wasted + counters.cancelled == counters.issued)
    }
}
