/// `moe-infinity`: MoE-Infinity's activation-aware prefetching (Xue et al., arXiv 2401.14361; the EfficientMoE/
/// MoE-Infinity repository's `ExpertTracer`, `ExpertPredictor` and `ExpertPrefetcher`, docs/policies.md):
///
/// - each sequence (request) keeps an **expert activation matrix** (EAM): tokens routed to each (layer, expert) so
///   far; a finished sequence's EAM joins a collection of at most `capacity` (1000, `trace_capacity`), in the first
///   empty slot, else replacing the one matched least often;
/// - at each layer l the current EAM is matched against the collection: the stored EAM with the least cosine
///   distance, `1 − mean over layers of cos(row-normalised rows)`, where the stored rows 0…l are made uniform (so
///   only layers after l tell the entries apart), is chosen, and its match count grows by one (ties: the first);
/// - the prediction is that EAM's rows after l, each weighted by `1 − (l' − l) / (L + 1)` (nearer layers first):
///   every (layer, expert) is proposed in order of `(count + 1e-8) × weight`, descending (ties in layer then expert
///   order), at most `limit` of them (the registry gives the model's top-k). MoE-Infinity queues the whole ranking
///   and replaces the queue at every layer (`replacesQueue`), so only its head ever starts while copies take longer
///   than a layer; moesim reserves a prefetch's memory when it is queued (MoE-Infinity when its copy starts), so
///   queuing the whole ranking would evict cached experts for copies cancelled before they start.
///
/// Cosines are those of `torch.nn.CosineSimilarity(eps: 1e-6)`: `x·y / max(‖x‖‖y‖, 1e-6)`; a row with no tokens has
/// cosine 0. With no stored EAM (the first sequence) nothing is proposed. Under batching the step's sequence is the
/// one `stepSeq` names (its first), and the step's union is counted for it.
public final class MoEInfinityPredictor: PrefetchPredictor {
    let layers: Int
    let experts: Int
    let capacity: Int
    let limit: Int
    // The plan's columns it reads (copies: the loop would copy a plan-sized value on every call).
    private var accessTokens: [Int32] = []
    private var layerStart: [Int32] = []
    private var stepSeq: [Int32] = []
    /// The current sequence's EAM (layers × experts token counts) and its sequence.
    private var current: [Float]
    private var currentSeq: Int32 = -1
    /// Stored EAMs (`stored` of them, `capacity` slots of layers × experts), their rows' sums, and match counts.
    private var collection: [Float]
    private var rowSums: [Float]
    /// Per stored row, its routed experts by count, most first (ties: lower id), and how many there are.
    private var ranked: [Int32]
    private var rankedCount: [Int]
    /// Per stored EAM and layer l, the proposals made when it is matched at l (`limit` slots, `proposalCount` of
    /// them taken): they depend on nothing else, so they are ranked once, when the EAM joins the collection.
    private var proposalsAt: [Int32]
    private var proposalCount: [Int]
    private var rowNorms: [Double]
    /// The current EAM's rows' sums and sums of squares, kept up to date as it counts tokens (whole numbers: the
    /// sums are exact in any order, and so are the squares while a row sums to at most `exactRowSum`; past it
    /// they are recomputed in expert order), and its rows' Euclidean norms at the step's first layer.
    private var currentSums: [Double]
    private var currentSquares: [Double]
    private var currentNorms: [Double]
    private var matches: [Double]
    private var stored = 0
    /// Per stored EAM, Σ over layers l' > l of the cosine of row l' with the current EAM's, for each l, computed
    /// at each step's first layer (rows after l do not change while a step passes layers ≤ l).
    private var suffixCosine: [Double]
    /// Per stored EAM k and layer l, the dot product of the current EAM's row l with k's, kept up to date as the
    /// current EAM counts tokens (a few experts a layer) instead of recomputed over every expert at each step.
    /// Exact while both rows sum to at most `exactRowSum`: then every product and partial sum is a whole number
    /// below 2^48, so any order of additions gives the bits of the sum in expert order; beyond it `cosine`
    /// recomputes the row in expert order.
    private var dots: [Double]
    /// 2^24 (`exactSum`); a test lowers it to reach the recomputation with small counts.
    let exactRowSum: Double
    /// Scratch for `rank`: the best proposals so far, in priority order.
    private var top: [(priority: Float, id: Int32)] = []
    public var source: String { "online" }
    /// `ReplaceCacheCandidates` and a fresh `enqueue_prefetch` per layer: the queue holds only the latest ranking.
    public static var replacesQueue: Bool { true }

    public init(layers: Int, experts: Int, limit: Int, capacity: Int = 1000, exactRowSum: Double = exactSum) {
        self.layers = layers
        self.experts = experts
        self.capacity = capacity
        self.limit = max(0, limit)
        current = Array(repeating: 0, count: layers * experts)
        collection = []
        rowSums = []
        ranked = []
        rankedCount = []
        rowNorms = []
        currentSums = Array(repeating: 0, count: layers)
        currentSquares = Array(repeating: 0, count: layers)
        currentNorms = Array(repeating: 0, count: layers)
        matches = []
        suffixCosine = []
        dots = []
        proposalsAt = []
        proposalCount = []
        self.exactRowSum = min(exactRowSum, Self.exactSum)
    }

    public func rebind(_ plan: StepPlan, following: StepPlan?) {
        accessTokens = plan.accessTokens
        layerStart = plan.layerStart
        stepSeq = plan.stepSeq
    }

    public func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList) {
        if layer == 0 {
            let seq = stepSeq[step]
            if seq != currentSeq {
                if currentSeq >= 0 { finishSequence() }
                currentSeq = seq
                for i in current.indices { current[i] = 0 }
                for i in dots.indices { dots[i] = 0 }
                for l in 0..<layers { currentSums[l] = 0; currentSquares[l] = 0 }
            }
            computeSuffixCosines()
        }
        // The tracer counts the layer's tokens before it matches.
        let first = Int(layerStart[step * layers + layer])
        let stored = self.stored, layers = self.layers, matrix = layers * experts
        current.withUnsafeMutableBufferPointer { current in
            dots.withUnsafeMutableBufferPointer { dots in
                collection.withUnsafeBufferPointer { collection in
                    var sum = currentSums[layer], squares = currentSquares[layer]
                    for (k, e) in revealed.enumerated() {
                        let before = Double(current[Int(e)])
                        current[Int(e)] += Float(accessTokens[first + k])
                        let count = Double(current[Int(e)]), added = count - before
                        sum += added
                        squares += count * count - before * before
                        for s in 0..<stored { dots[s * layers + layer] += added * Double(collection[s * matrix + Int(e)]) }
                    }
                    currentSums[layer] = sum
                    currentSquares[layer] = squares
                }
            }
        }
        guard stored > 0, layer + 1 < layers, limit > 0 else { return }
        // The least distance is the largest sum over the layers after `layer` (the rest is the same for every entry).
        var best = 0
        for k in 1..<stored where suffixCosine[k * layers + layer] > suffixCosine[best * layers + layer] { best = k }
        matches[best] += 1
        let at = best * layers + layer
        for r in 0..<proposalCount[at] { proposals.append(proposalsAt[at * limit + r]) }
    }

    /// The proposals of stored EAM `slot` when it is matched at `layer`, into `top`: the `limit` best by descending
    /// priority `(count + 1e-8) × weight`, equal priorities in layer-then-expert order (Python's stable sort). Within
    /// a layer priority follows the count, so each later layer offers only its `limit` most routed experts
    /// (`ranked`); an expert never routed (1e-8 × weight) ranks below every routed one (weights are at least
    /// 2 / (L + 1)), so those fill what is left, nearest layer first.
    private func rank(_ slot: Int, after layer: Int) {
        top.removeAll(keepingCapacity: true)
        for l in (layer + 1)..<layers {
            let weight = Float(1 - Double(l - layer) / Double(layers + 1))
            let row = (slot * layers + l) * experts
            for r in 0..<min(limit, rankedCount[slot * layers + l]) {
                let e = Int(ranked[row + r])
                let priority = (collection[row + e] + 1e-8) * weight
                if top.count == limit, !(priority > top[limit - 1].priority) { break }
                // Into place behind the equal priorities, the last one dropping out when the list is full.
                if top.count < limit { top.append((priority, 0)) }
                var i = top.count - 1
                while i > 0 && priority > top[i - 1].priority { top[i] = top[i - 1]; i -= 1 }
                top[i] = (priority, Int32(l * experts + e))
            }
        }
        var l = layer + 1, e = 0
        while top.count < limit && l < layers {
            if collection[(slot * layers + l) * experts + e] == 0 { top.append((0, Int32(l * experts + e))) }
            e += 1
            if e == experts { e = 0; l += 1 }
        }
    }

    /// The finished sequence's EAM joins the collection: the first empty slot, else the entry matched least often
    /// (the first of those); it starts with one match.
    private func finishSequence() {
        let slot: Int
        if stored < capacity {
            slot = stored
            stored += 1
            collection.append(contentsOf: repeatElement(0, count: layers * experts))
            rowSums.append(contentsOf: repeatElement(0, count: layers))
            rowNorms.append(contentsOf: repeatElement(0, count: layers))
            ranked.append(contentsOf: repeatElement(0, count: layers * experts))
            rankedCount.append(contentsOf: repeatElement(0, count: layers))
            matches.append(0)
            suffixCosine.append(contentsOf: repeatElement(0, count: layers))
            dots.append(contentsOf: repeatElement(0, count: layers))
            proposalsAt.append(contentsOf: repeatElement(0, count: layers * limit))
            proposalCount.append(contentsOf: repeatElement(0, count: layers))
        } else {
            slot = matches.indices.min { matches[$0] < matches[$1] }!
        }
        let base = slot * layers * experts
        for i in 0..<(layers * experts) { collection[base + i] = current[i] }
        for l in 0..<layers {
            let row = current[(l * experts)..<((l + 1) * experts)]
            rowSums[slot * layers + l] = row.reduce(0, +)
            rowNorms[slot * layers + l] = row.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            let routed = (0..<experts).filter { current[l * experts + $0] > 0 }
                .sorted { (current[l * experts + $0], $1) > (current[l * experts + $1], $0) }
            for (r, e) in routed.enumerated() { ranked[(slot * layers + l) * experts + r] = Int32(e) }
            rankedCount[slot * layers + l] = routed.count
        }
        for l in 0..<(layers - 1) {
            rank(slot, after: l)
            for (r, proposal) in top.enumerated() { proposalsAt[(slot * layers + l) * limit + r] = proposal.id }
            proposalCount[slot * layers + l] = top.count
        }
        matches[slot] = 1
    }

    /// For every stored EAM k and layer l: Σ over l' > l of cos(current row l', stored row l'), rows normalised to
    /// sum 1 first (as MoE-Infinity does before its cosine, whose ε then applies to the normalised norms).
    private func computeSuffixCosines() {
        guard stored > 0 else { return }
        for l in 0..<layers {
            if currentSums[l] > exactRowSum {
                var squares = 0.0
                for e in 0..<experts { let x = Double(current[l * experts + e]); squares += x * x }
                currentSquares[l] = squares
            }
            currentNorms[l] = currentSquares[l].squareRoot()
        }
        for k in 0..<stored {
            var suffix = 0.0
            for l in stride(from: layers - 1, through: 0, by: -1) {
                suffixCosine[k * layers + l] = suffix  // layers after l
                suffix += cosine(k, row: l)
            }
        }
    }

    /// Row sums up to which a dot product of two rows is exact in any order: the counts are whole numbers, so with
    /// both sums at most 2^24 every product and partial sum is a whole number below 2^48 (exact in a Double).
    public static let exactSum = Double(1 << 24)

    /// Σ x[e]·y[e] in Double, in expert order.
    @inline(__always)
    static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Double {
        var dot = 0.0
        for e in 0..<count { dot += Double(x[e]) * Double(y[e]) }
        return dot
    }

    private func cosine(_ k: Int, row l: Int) -> Double {
        let sumA = currentSums[l], sumB = Double(rowSums[k * layers + l])
        guard sumA > 0, sumB > 0 else { return 0 }
        let dot: Double
        if sumA <= exactRowSum && sumB <= exactRowSum {
            dot = dots[k * layers + l]
        } else {
            let a = l * experts, b = k * layers * experts + l * experts
            dot = current.withUnsafeBufferPointer { current in
                collection.withUnsafeBufferPointer { collection in
                    MoEInfinityPredictor.dot(current.baseAddress! + a, collection.baseAddress! + b, count: experts)
                }
            }
        }
        let norms = (currentNorms[l] / sumA) * (rowNorms[k * layers + l] / sumB)
        return dot / (sumA * sumB) / max(norms, 1e-6)
    }
}
