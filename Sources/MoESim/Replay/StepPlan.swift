/// A trace compiled into forward passes: for each step and layer, the set of experts to run, ascending by id.
///
///     let plan = StepPlan(trace)
///     plan.accessRange(step: 0, layer: 5)   // indices into accessExpert / accessTokens
///
/// Batch of 1 (SIMULATION.md): a sequence's prefill tokens form one step (the union of their experts per layer,
/// with a token count per expert); each decode token is one step. An access is one (step, layer, expert) of that set;
/// `accessExpert` holds its flat id `layer * experts + expert`, which every per-expert array is indexed by.
///
/// Invariant: `layerStart` is non-decreasing, has `steps * layers + 1` entries, and ids within a layer ascend.
public struct StepPlan: Sendable {
    public let layers: Int
    public let experts: Int
    /// Offsets into the access arrays per (step, layer); the step-layer (s, l) is `layerStart[s*L+l] ..< layerStart[s*L+l+1]`.
    public private(set) var layerStart: [Int32] = [0]
    public private(set) var accessExpert: [Int32] = []
    public private(set) var accessTokens: [Int32] = []
    public private(set) var stepTokens: [Int32] = []
    public private(set) var stepPhase: [Phase] = []
    public private(set) var stepSeq: [Int32] = []
    /// Whether the step is the first of its sequence (its latency is the sequence's time to first token).
    public private(set) var stepStartsSequence: [Bool] = []
    public let tokens: Int
    public let missingCells: Int
    /// Recorded predictions per (step, layer), the union over the step's tokens (flat ids, ascending); empty when
    /// the trace has none.
    public private(set) var predictionStart: [Int32] = []
    public private(set) var predictedExpert: [Int32] = []
    public var hasPredictions: Bool { !predictionStart.isEmpty }
    /// Per access, the largest and the summed gate weight of the step's tokens routed to it; empty when the trace
    /// has no weights. `mixed-precision` decides on the largest; `low_precision_share` adds up the sums.
    public private(set) var accessWeightMax: [Float] = []
    public private(set) var accessWeightSum: [Float] = []
    public var hasWeights: Bool { !accessWeightMax.isEmpty }
    /// Σ of every routed gate weight (0 without weights).
    public private(set) var totalWeight = 0.0

    public func predictionRange(step: Int, layer: Int) -> Range<Int> {
        guard hasPredictions else { return 0..<0 }
        return Int(predictionStart[step * layers + layer])..<Int(predictionStart[step * layers + layer + 1])
    }

    public var steps: Int { stepTokens.count }
    public var accesses: Int { accessExpert.count }

    @inlinable public func accessRange(step: Int, layer: Int) -> Range<Int> {
        accessRange(step: step, layers: layer...layer)
    }

    /// The accesses of layers `layers` of `step`: contiguous, since a step's layers are stored in order.
    @inlinable public func accessRange(step: Int, layers span: ClosedRange<Int>) -> Range<Int> {
        Int(layerStart[step * layers + span.lowerBound])..<Int(layerStart[step * layers + span.upperBound + 1])
    }

    /// - Parameter previousSeq: in a streaming replay, the sequence of the token before this chunk (nil: none), so
    ///   that a sequence continuing across chunks does not count a second first token.
    public init(_ trace: RoutingTrace, previousSeq: Int32? = nil) {
        let L = trace.header.layers, E = trace.header.experts, K = trace.header.topK
        layers = L; experts = E
        tokens = trace.tokenCount
        missingCells = trace.missingCells
        // Built in locals and stored once at the end: appending to stored properties checks uniqueness every time.
        var largestSet = [Int](repeating: 0, count: L), layerStart: [Int32] = [0]
        var accessExpert: [Int32] = [], accessTokens: [Int32] = []
        var accessWeightMax: [Float] = [], accessWeightSum: [Float] = [], totalWeight = 0.0
        layerStart.reserveCapacity(trace.tokenCount * L + 1)
        var counts = [Int32](repeating: 0, count: E)
        var weightMax = [Float](repeating: 0, count: E), weightSum = [Float](repeating: 0, count: E)
        let weighted = trace.hasWeights
        if weighted {
            accessWeightMax.reserveCapacity(trace.recordedRoutings)
            accessWeightSum.reserveCapacity(trace.recordedRoutings)
        }
        var touched: [Int] = []
        touched.reserveCapacity(E)
        accessExpert.reserveCapacity(trace.recordedRoutings)
        accessTokens.reserveCapacity(trace.recordedRoutings)

        if trace.hasPredictions { predictionStart = [0] }
        var predictedScratch: [Int] = []
        var t = 0
        while t < trace.tokenCount {
            // A step: one decode token, or the run of prefill tokens of one sequence.
            var end = t + 1
            if trace.phase[t] == .prefill {
                while end < trace.tokenCount && trace.phase[end] == .prefill && trace.seq[end] == trace.seq[t] { end += 1 }
            }
            for l in 0..<L {
                for token in t..<end {
                    let base = (token * L + l) * K
                    if trace.experts[base] == TokenRecord.missing { continue }
                    for j in 0..<K {
                        let e = Int(trace.experts[base + j])
                        if counts[e] == 0 { touched.append(e) }
                        counts[e] += 1
                        if weighted {
                            let w = trace.weights[base + j]
                            weightMax[e] = max(weightMax[e], w)
                            weightSum[e] += w
                            totalWeight += Double(w)
                        }
                    }
                }
                insertionSort(&touched)  // at most a step's distinct experts; usually top-k
                largestSet[l] = max(largestSet[l], touched.count)
                for e in touched {
                    accessExpert.append(Int32(l * E + e))
                    accessTokens.append(counts[e])
                    counts[e] = 0
                    if weighted {
                        accessWeightMax.append(weightMax[e]); accessWeightSum.append(weightSum[e])
                        weightMax[e] = 0; weightSum[e] = 0
                    }
                }
                touched.removeAll(keepingCapacity: true)
                layerStart.append(Int32(accessExpert.count))
                if trace.hasPredictions {
                    for token in t..<end { predictedScratch.append(contentsOf: trace.predictedIDs(token: token, layer: l).map(Int.init)) }
                    for e in Set(predictedScratch).sorted() { predictedExpert.append(Int32(l * E + e)) }
                    predictedScratch.removeAll(keepingCapacity: true)
                    predictionStart.append(Int32(predictedExpert.count))
                }
            }
            stepTokens.append(Int32(end - t))
            stepPhase.append(trace.phase[t])
            stepSeq.append(trace.seq[t])
            stepStartsSequence.append((t == 0 ? previousSeq : trace.seq[t - 1]) != trace.seq[t])
            t = end
        }
        self.largestSet = largestSet
        self.layerStart = layerStart
        self.accessExpert = accessExpert
        self.accessTokens = accessTokens
        self.accessWeightMax = accessWeightMax
        self.accessWeightSum = accessWeightSum
        self.totalWeight = totalWeight
    }

    /// The largest number of distinct experts any single step-layer needs at once, per layer (kept from the build:
    /// every replay's budget check asks for it).
    public func largestWorkingSet() -> [Int] { largestSet }
    private var largestSet: [Int] = []
}

/// Sorts a short array in place (a layer's expert set: a few to a few dozen ids).
private func insertionSort(_ a: inout [Int]) {
    a.withUnsafeMutableBufferPointer { p in
        for i in 1..<max(1, p.count) {
            let v = p[i]
            var j = i
            while j > 0 && p[j - 1] > v { p[j] = p[j - 1]; j -= 1 }
            p[j] = v
        }
    }
}
