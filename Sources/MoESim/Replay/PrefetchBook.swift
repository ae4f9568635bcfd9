import DequeModule

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
///     book.queue(e, at: gate)            // memory already reserved by the caller
///     book.settleAccess(e, at: gate)     // when a gate asks for e
///
/// Per-expert state lives in raw buffers indexed by flat id, like the rest of the replay loop's state.
final class PrefetchBook {
    static let none: UInt8 = 0, queued: UInt8 = 1, awaitingUse: UInt8 = 2
    /// Returned by `settleAccess` for a queued copy that must now be sent as a demand copy.
    static let promote: Int64 = -2

    let state: UnsafeMutablePointer<UInt8>
    let landTime: UnsafeMutablePointer<Int64>
    let issuedAt: UnsafeMutablePointer<Int64>
    /// Stamp of the step a prediction for this expert was made in (so one expert counts once per step).
    private let predictedInStep: UnsafeMutablePointer<Int32>
    private let experts: Int
    var pending = Deque<Int32>()
    private(set) var counters = PrefetchCounters()
    private var predictedPerLayer: [Int]
    private var stepStamp: Int32 = 0

    var bytesPrefetch: Int {
        get { counters.bytesPrefetch }
        set { counters.bytesPrefetch = newValue }
    }

    init(experts: Int, layers: Int) {
        self.experts = experts
        state = .allocate(capacity: experts); state.initialize(repeating: 0, count: experts)
        landTime = .allocate(capacity: experts); landTime.initialize(repeating: 0, count: experts)
        issuedAt = .allocate(capacity: experts); issuedAt.initialize(repeating: 0, count: experts)
        predictedInStep = .allocate(capacity: experts); predictedInStep.initialize(repeating: 0, count: experts)
        predictedPerLayer = Array(repeating: 0, count: layers)
    }

    deinit {
        state.deallocate(); landTime.deallocate(); issuedAt.deallocate(); predictedInStep.deallocate()
    }

    func startStep() {
        stepStamp &+= 1
        for l in predictedPerLayer.indices { predictedPerLayer[l] = 0 }
    }

    /// Counts a proposal for prediction quality (each expert once per step).
    func notePrediction(_ e: Int32, layers: Int, experts perLayer: Int) {
        guard predictedInStep[Int(e)] != stepStamp else { return }
        predictedInStep[Int(e)] = stepStamp
        predictedPerLayer[Int(e) / perLayer] += 1
    }

    /// At a layer's gate: how many of its experts were predicted this step.
    func scorePredictions(layer: Int, set: UnsafeBufferPointer<Int32>) {
        guard predictedPerLayer[layer] > 0 else { return }
        var correct = 0
        for e in set where predictedInStep[Int(e)] == stepStamp { correct += 1 }
        counters.predictedCorrect += correct
        counters.predicted += predictedPerLayer[layer]
        counters.actual += set.count
    }

    func queue(_ e: Int32, at time: Int64) {
        state[Int(e)] = PrefetchBook.queued
        issuedAt[Int(e)] = time
        pending.append(e)
        counters.issued += 1
    }

    /// Settles a prefetched expert that a gate asks for at `time`. Returns -1 if it had landed (a hit), its landing
    /// time if it is on the link (late), or `promote` if it was still queued (late; the caller sends it now).
    func settleAccess(_ e: Int32, at time: Int64) -> Int64 {
        let s = state[Int(e)]
        state[Int(e)] = PrefetchBook.none
        if s == PrefetchBook.queued {
            counters.late += 1
            return PrefetchBook.promote
        }
        if landTime[Int(e)] <= time {
            counters.useful += 1
            return -1
        }
        counters.late += 1
        return landTime[Int(e)]
    }

    /// Settles a prefetched expert being evicted before any use.
    func settleEviction(_ e: Int32, bytes: Int) {
        switch state[Int(e)] {
        case PrefetchBook.queued: counters.cancelled += 1
        case PrefetchBook.awaitingUse: counters.wasted += 1; counters.bytesWasted += bytes
        default: return
        }
        state[Int(e)] = PrefetchBook.none
    }

    /// Cancels the copies for `layer` still queued once it has ended, appending them to `cancelled` so the caller
    /// frees their memory.
    func cancelQueued(layer: Int, experts perLayer: Int, into cancelled: inout [Int32]) {
        for e in pending where state[Int(e)] == PrefetchBook.queued && Int(e) / perLayer == layer {
            state[Int(e)] = PrefetchBook.none
            counters.cancelled += 1
            cancelled.append(e)
        }
    }

    /// At the end of the replay, prefetched experts never asked for are wasted.
    func finish(bytes: Int) {
        for e in 0..<experts where state[e] == PrefetchBook.awaitingUse {
            state[e] = PrefetchBook.none
            counters.wasted += 1
            counters.bytesWasted += bytes
        }
        precondition(counters.useful + counters.late + counters.wasted + counters.cancelled == counters.issued)
    }
}
