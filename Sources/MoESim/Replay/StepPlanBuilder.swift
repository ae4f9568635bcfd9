/// Compiles steps of a trace into a `StepPlan`: each step is one or more runs of the trace's tokens (a sequence's
/// prefill, one decode token, or the members of a batch), and per layer its expert set is the union over those
/// tokens, ascending by id, each expert with the number of tokens routed to it, its largest and summed gate weight,
/// and the union of the tokens' recorded predictions.
///
///     var builder = StepPlanBuilder(trace)
///     builder.addStep([0..<12, 40..<41], phase: .prefill, seq: 0, startsSequence: true)   // a batch of two
///     let plan = StepPlan(builder)
///
/// Arrays are built in the builder's own storage and moved into the plan once: appending to a plan's stored
/// properties would check uniqueness on every access.
struct StepPlanBuilder {
    let trace: RoutingTrace
    let layers: Int, experts: Int, topK: Int
    private(set) var tokens = 0
    private(set) var missingCells = 0
    private(set) var largestSet: [Int]
    private(set) var layerStart: [Int32] = [0]
    private(set) var accessExpert: [Int32] = [], accessTokens: [Int32] = []
    private(set) var accessWeightMax: [Float] = [], accessWeightSum: [Float] = []
    private(set) var totalWeight = 0.0
    private(set) var predictionStart: [Int32] = []
    private(set) var predictedExpert: [Int32] = []
    private(set) var stepTokens: [Int32] = [], stepPhase: [Phase] = [], stepSeq: [Int32] = []
    private(set) var stepStartsSequence: [Bool] = []
    private(set) var stepAttention: [StepAttention] = []
    // Scratch, per layer: tokens and weights per expert, and the experts touched.
    private var counts: [Int32], weightMax: [Float], weightSum: [Float]
    private var touched: [Int] = [], predictedScratch: [Int] = []

    /// - Parameter reserving: tokens the plan will hold about (capacity reserved up front; 0 for a small plan).
    init(_ trace: RoutingTrace, reserving: Int? = nil) {
        self.trace = trace
        layers = trace.header.layers; experts = trace.header.experts; topK = trace.header.topK
        largestSet = Array(repeating: 0, count: layers)
        counts = Array(repeating: 0, count: experts)
        weightMax = Array(repeating: 0, count: experts); weightSum = Array(repeating: 0, count: experts)
        touched.reserveCapacity(experts)
        if trace.hasPredictions { predictionStart = [0] }
        let share = Double(reserving ?? trace.tokenCount) / Double(max(1, trace.tokenCount))
        let routings = Int(Double(trace.recordedRoutings) * share)
        layerStart.reserveCapacity((reserving ?? trace.tokenCount) * layers + 1)
        accessExpert.reserveCapacity(routings); accessTokens.reserveCapacity(routings)
        if trace.hasWeights { accessWeightMax.reserveCapacity(routings); accessWeightSum.reserveCapacity(routings) }
    }

    /// Appends one step made of the tokens in `parts` (ranges of trace token indices, each within one sequence).
    /// - Parameter kvHeld: tokens of context whose KV cache is on the GPU during the step (nil: the parts' own, as
    ///   when the step's sequences are the only ones started and unfinished).
    mutating func addStep<Parts: Collection>(_ parts: Parts, phase: Phase, seq: Int32, startsSequence: Bool,
                                             kvHeld: Int64? = nil)
    where Parts.Element == Range<Int> {
        let L = layers, E = experts, K = topK, weighted = trace.hasWeights
        var stepTokenCount = 0
        // Attention: a token at position p attends to p + 1 keys (causal); a part reads its sequence's KV cache up
        // to its last token once.
        var pairs: Int64 = 0, read: Int64 = 0
        for part in parts where !part.isEmpty {
            stepTokenCount += part.count
            for token in part { pairs += Int64(trace.pos[token]) + 1 }
            read += Int64(trace.pos[part.upperBound - 1]) + 1
        }
        // The step's accesses are gathered in raw scratch and appended once: an array append per access checks
        // uniqueness out of line, which cost more than the rest of the work.
        let capacity = min(stepTokenCount * K, E) * L
        var scratch = StepScratch(capacity: capacity, weighted: weighted)
        defer { scratch.deallocate() }
        // Raw views of the trace: a checked array access per routing costs more than the rest of the work.
        trace.experts.withUnsafeBufferPointer { ids in
            trace.weights.withUnsafeBufferPointer { weights in
                for l in 0..<L {
                    for part in parts {
                        for token in part {
                            let base = (token * L + l) * K
                            if ids[base] == TokenRecord.missing { missingCells += 1; continue }
                            for j in 0..<K {
                                let e = Int(ids[base + j])
                                if counts[e] == 0 { touched.append(e) }
                                counts[e] += 1
                                if weighted {
                                    let w = weights[base + j]
                                    weightMax[e] = max(weightMax[e], w)
                                    weightSum[e] += w
                                    totalWeight += Double(w)
                                }
                            }
                        }
                    }
                    gatherLayer(l, into: &scratch)
                }
            }
        }
        accessExpert.append(contentsOf: UnsafeBufferPointer(start: scratch.expert, count: scratch.count))
        accessTokens.append(contentsOf: UnsafeBufferPointer(start: scratch.tokens, count: scratch.count))
        if weighted {
            accessWeightMax.append(contentsOf: UnsafeBufferPointer(start: scratch.weightMax, count: scratch.count))
            accessWeightSum.append(contentsOf: UnsafeBufferPointer(start: scratch.weightSum, count: scratch.count))
        }
        if trace.hasPredictions {
            for l in 0..<L {
                for part in parts {
                    for token in part { predictedScratch.append(contentsOf: trace.predictedIDs(token: token, layer: l).map(Int.init)) }
                }
                for e in Set(predictedScratch).sorted() { predictedExpert.append(Int32(l * E + e)) }
                predictedScratch.removeAll(keepingCapacity: true)
                predictionStart.append(Int32(predictedExpert.count))
            }
        }
        tokens += stepTokenCount
        stepTokens.append(Int32(stepTokenCount))
        stepPhase.append(phase)
        stepSeq.append(seq)
        stepStartsSequence.append(startsSequence)
        stepAttention.append(StepAttention(pairs: pairs, kvRead: read, kvHeld: kvHeld ?? read))
    }

    /// Moves layer `l`'s set (the experts `touched`, ascending, with their counts and weights) into `scratch` and
    /// clears it.
    private mutating func gatherLayer(_ l: Int, into scratch: inout StepScratch) {
        let E = experts
        if touched.count * 8 > E {  // a batch's union: reading the counts in id order beats sorting
            touched.removeAll(keepingCapacity: true)
            for e in 0..<E where counts[e] > 0 { touched.append(e) }
        } else {
            insertionSort(&touched)  // a few ids: one token's top-k, or a short prefill
        }
        largestSet[l] = max(largestSet[l], touched.count)
        let weighted = trace.hasWeights
        for e in touched {
            let i = scratch.count
            scratch.expert[i] = Int32(l * E + e)
            scratch.tokens[i] = counts[e]
            counts[e] = 0
            if weighted {
                scratch.weightMax![i] = weightMax[e]; scratch.weightSum![i] = weightSum[e]
                weightMax[e] = 0; weightSum[e] = 0
            }
            scratch.count += 1
        }
        touched.removeAll(keepingCapacity: true)
        layerStart.append(Int32(accessExpert.count + scratch.count))
    }
}

/// One step's accesses while they are gathered (raw buffers of the step's largest possible size).
private struct StepScratch {
    let expert: UnsafeMutablePointer<Int32>
    let tokens: UnsafeMutablePointer<Int32>
    let weightMax: UnsafeMutablePointer<Float>?
    let weightSum: UnsafeMutablePointer<Float>?
    var count = 0

    init(capacity: Int, weighted: Bool) {
        expert = .allocate(capacity: max(1, capacity)); tokens = .allocate(capacity: max(1, capacity))
        weightMax = weighted ? .allocate(capacity: max(1, capacity)) : nil
        weightSum = weighted ? .allocate(capacity: max(1, capacity)) : nil
    }

    func deallocate() {
        expert.deallocate(); tokens.deallocate(); weightMax?.deallocate(); weightSum?.deallocate()
    }
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
