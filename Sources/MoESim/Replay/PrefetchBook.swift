
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
    private(set) var counters = PrefetchCounters()
    /// Bytes held by prefetches not yet settled (queued or awaiting use): capped by the prefetch buffer.
    private(set) var heldBytes = 0
    let bytesPerCopy: Int
    private let predictedPerLayer: UnsafeMutablePointer<Int>
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
        issuedAt = .allocate(capacity: experts); issuedAt.initialize(repeating: 0, count: experts)
        predictedInStep = .allocate(capacity: experts); predictedInStep.initialize(repeating: 0, count: experts)
        self.layers = layers
        predictedPerLayer = .allocate(capacity: layers); predictedPerLayer.initialize(repeating: 0, count: layers)
        layerOf = .allocate(capacity: experts)
        let perLayer = experts / max(1, layers)
        for e in 0..<experts { layerOf[e] = Int32(e / max(1, perLayer)) }
    }

    deinit {
        state.deallocate(); landTime.deallocate(); issuedAt.deallocate(); predictedInStep.deallocate()
        predictedPerLayer.deallocate(); layerOf.deallocate()
    }

    func startStep() {
        stepStamp &+= 1
        predictedPerLayer.update(repeating: 0, count: layers)
    }

    /// Counts a proposal for prediction quality (each expert once per step).
    @inline(__always)
    func notePrediction(_ e: Int32) {
        guard predictedInStep[Int(e)] != stepStamp else { return }
        predictedInStep[Int(e)] = stepStamp
        predictedPerLayer[Int(layerOf[Int(e)])] &+= 1
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

    /// Records `e` as queued at `time`; the caller appends it to the link's pending queue.
    func queue(_ e: Int32, at time: Int64) {
        state[Int(e)] = PrefetchBook.queued
        issuedAt[Int(e)] = time
        counters.issued += 1
        heldBytes += bytesPerCopy
    }

    /// Settles a prefetched expert that a gate asks for at `time`. Returns -1 if it had landed (a hit), its landing
    /// time if it is on the link (late), or `promote` if it was still queued (late; the caller sends it now).
    func settleAccess(_ e: Int32, at time: Int64) -> Int64 {
        let s = state[Int(e)]
        state[Int(e)] = PrefetchBook.none
        heldBytes -= bytesPerCopy
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
    func settleEviction(_ e: Int32) {
        switch state[Int(e)] {
        case PrefetchBook.queued: counters.cancelled += 1
        case PrefetchBook.awaitingUse: counters.wasted += 1; counters.bytesWasted += bytesPerCopy
        default: return
        }
        state[Int(e)] = PrefetchBook.none
        heldBytes -= bytesPerCopy
    }

    /// Cancels the copies in `pending` for `layer` still queued once it has ended, appending them to `cancelled` so
    /// the caller frees their memory. Entries already started, promoted or cancelled are dropped from the front.
    @inline(__always)
    func cancelQueued(layer: Int, pending: inout PendingCopies, into cancelled: inout ExpertList) {
        while let e = pending.first, state[Int(e)] != PrefetchBook.queued { pending.removeFirst() }
        pending.forEach { e in
            guard state[Int(e)] == PrefetchBook.queued && Int(layerOf[Int(e)]) == layer else { return }
            state[Int(e)] = PrefetchBook.none
            heldBytes -= bytesPerCopy
            counters.cancelled += 1
            cancelled.append(e)
        }
    }

    /// At the end of the replay, prefetched experts never asked for are wasted.
    func finish() {
        for e in 0..<experts where state[e] == PrefetchBook.awaitingUse {
            state[e] = PrefetchBook.none
            heldBytes -= bytesPerCopy
            counters.wasted += 1
            counters.bytesWasted += bytesPerCopy
        }
        precondition(counters.useful + counters.late + counters.wasted + counters.cancelled == counters.issued)
    }
}

/// The prefetch copies waiting for the link, in issue order: a ring buffer of flat ids over raw memory (a `Deque`
/// here cost a fifth of prefetching replay time). It may hold entries already settled; readers skip them.
struct PendingCopies {
    private var buffer: UnsafeMutablePointer<Int32>
    private var capacity: Int
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 1024) {
        self.capacity = capacity
        buffer = .allocate(capacity: capacity)
    }

    /// Frees the buffer; the owner calls it once, at the end of the replay.
    func deallocate() { buffer.deallocate() }

    var isEmpty: Bool { count == 0 }
    var first: Int32? { count > 0 ? buffer[head] : nil }

    mutating func removeFirst() {
        head = head + 1 == capacity ? 0 : head + 1
        count -= 1
    }

    mutating func append(_ e: Int32) {
        if count == capacity { grow() }
        var slot = head + count
        if slot >= capacity { slot -= capacity }
        buffer[slot] = e
        count += 1
    }

    /// Calls `body` on every entry, front to back.
    func forEach(_ body: (Int32) -> Void) {
        var slot = head
        for _ in 0..<count {
            body(buffer[slot])
            slot = slot + 1 == capacity ? 0 : slot + 1
        }
    }

    private mutating func grow() {
        let bigger = UnsafeMutablePointer<Int32>.allocate(capacity: capacity * 2)
        for i in 0..<count { bigger[i] = buffer[(head + i) % capacity] }
        buffer.deallocate()
        buffer = bigger
        capacity *= 2
        head = 0
    }
}
