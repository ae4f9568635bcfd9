/// Compiles steps of a trace into a `StepPlan`: each step is one or more runs of the trace's tokens (a sequence's
/// prefill, one decode token, or the members of a batch), and per layer its expert set is the union over those
/// tokens, ascending by id, each expert with the number of tokens routed to it, its largest and summed gate weight,
/// and the union of the tokens' recorded predictions.
///
///     var builder = StepPlanBuilder(trace)
///     builder.addStep([0..<12, 40..<41], phase: .prefill, seq: 0, firstSteps: 1, laterOutputs: 1)   // a batch of two
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
    private(set) var stepFirstSteps: [Int32] = []
    private(set) var stepLaterOutputs: [Int32] = []
    private(set) var stepAttention: [StepAttention] = []
    /// Whether the plan keeps the gate weights per access (the trace has them and the strategy reads them), and
    /// whether it adds them up (the trace has them: `totalWeight`).
    let weighted: Bool
    var sumsWeights: Bool { trace.hasWeights }
    /// False for a builder that only counts (`SequentialFacts`): the steps' accesses are formed and measured but not
    /// kept, and each access is tallied per expert in `uses` instead.
    let keepsAccesses: Bool
    /// Accesses formed so far (kept or not); when they are not kept, the most tokens of one step routed to one
    /// expert, and per flat id its accesses.
    private(set) var accessCount = 0
    private(set) var maxAccessTokens: Int32 = 0
    private(set) var uses: [Int] = []
    private let union: UnionScratch
    private var predictedScratch: [Int] = []
    /// Faults in the reserved columns ahead of the appends (a plan of tens of megabytes), or nil.
    private var prefault: PagePrefault?
    /// Whether a step of one token sorts its ids in place (`StepScratch.appendSorted`) rather than going through
    /// the union; false only in the test that holds the two equal.
    var sortsLoneTokens = true

    /// - Parameters:
    ///   - reserving: tokens the plan will hold about (capacity reserved up front; 0 for a small plan).
    ///   - scratch: working memory to reuse (a scheduler compiling one step at a time keeps one).
    ///   - weights: false to leave the gate weights out (a strategy that does not read them compiles faster).
    ///   - keepsAccesses: false to count the steps' accesses without keeping them (`SequentialFacts`).
    init(_ trace: RoutingTrace, reserving: Int? = nil, scratch: UnionScratch? = nil, weights: Bool = true,
         keepsAccesses: Bool = true) {
        self.trace = trace
        self.keepsAccesses = keepsAccesses
        weighted = weights && trace.hasWeights
        layers = trace.header.layers; experts = trace.header.experts; topK = trace.header.topK
        largestSet = Array(repeating: 0, count: layers)
        union = scratch ?? UnionScratch(experts: experts)
        precondition(union.experts == experts, "scratch for another trace")
        if trace.hasPredictions { predictionStart = [0] }
        guard keepsAccesses else {
            uses = Array(repeating: 0, count: layers * experts)
            layerStart = []
            return
        }
        let share = Double(reserving ?? trace.tokenCount) / Double(max(1, trace.tokenCount))
        let routings = Int(Double(trace.recordedRoutings) * share)
        layerStart.reserveCapacity((reserving ?? trace.tokenCount) * layers + 1)
        accessExpert.reserveCapacity(routings); accessTokens.reserveCapacity(routings)
        if weighted { accessWeightMax.reserveCapacity(routings); accessWeightSum.reserveCapacity(routings) }
        // Only what the trace's sequential steps can fill is faulted in: a long prefill's union holds far fewer
        // accesses than its routings, and pages faulted in but never written would only add to the peak memory.
        let (steps, accesses) = Self.sequentialBound(trace)
        prefault = PagePrefault([Self.reserved(&layerStart, upTo: steps * layers + 1),
                                 Self.reserved(&accessExpert, upTo: accesses), Self.reserved(&accessTokens, upTo: accesses),
                                 Self.reserved(&accessWeightMax, upTo: accesses), Self.reserved(&accessWeightSum, upTo: accesses)]
                                    .compactMap { $0 })
    }

    /// At most how many steps and accesses the trace's sequential steps make (`addSequentialSteps`): a prefill run
    /// of n tokens is one step of at most min(n × topK, experts) accesses a layer, a decode token one of topK.
    static func sequentialBound(_ trace: RoutingTrace) -> (steps: Int, accesses: Int) {
        let K = trace.header.topK, E = trace.header.experts
        var steps = 0, perLayer = 0, t = 0
        while t < trace.tokenCount {
            let end = sequentialStepEnd(trace, from: t)
            steps += 1
            perLayer += min((end - t) * K, E)
            t = end
        }
        return (steps, perLayer * trace.header.layers)
    }

    /// Waits for the columns' pages to be faulted in (`PagePrefault`), so that no worker outlives them.
    func awaitPrefault() { prefault?.wait() }

    /// Where `array`'s reserved storage starts, and the bytes of its first `count` elements (at most its capacity),
    /// for `PagePrefault`; nil when it has none. The storage stays put while the builder appends within the capacity
    /// it reserved; should it grow, the worker only touches memory freed.
    private static func reserved<T>(_ array: inout [T], upTo count: Int) -> (start: UnsafeMutableRawPointer, bytes: Int)? {
        let start = array.withUnsafeMutableBufferPointer { UnsafeMutableRawPointer($0.baseAddress) }
        return start.map { ($0, min(array.capacity, count) * MemoryLayout<T>.stride) }
    }

    /// Appends one step made of the tokens in `parts` (ranges of trace token indices, each within one sequence).
    /// - Parameters:
    ///   - firstSteps: sequences whose first step this is (each counts its latency once in `ttft_s`).
    ///   - laterOutputs: output tokens in the step that are not their sequence's first token (each counts its
    ///     latency once in `tpot_*`).
    ///   - kvHeld: tokens of context whose KV cache is on the GPU during the step (nil: the parts' own, as when the
    ///     step's sequences are the only ones started and unfinished).
    mutating func addStep<Parts: Collection>(_ parts: Parts, phase: Phase, seq: Int32, firstSteps: Int, laterOutputs: Int,
                                             kvHeld: Int64? = nil)
    where Parts.Element == Range<Int> {
        let L = layers, E = experts, K = topK, weighted = weighted, sums = sumsWeights
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
        let u = union
        var scratch = u.stepBuffer(capacity: min(stepTokenCount * K, E) * L, weighted: weighted)
        defer { u.keep(scratch) }
        // Raw views of the trace: a checked array access per routing costs more than the rest of the work.
        // One token (a decode step at batch 1, the sequential plan's usual step): its layer's set is its own ids,
        // sorted in place, with no union to gather.
        let lone = stepTokenCount == 1 && sortsLoneTokens ? parts.first { !$0.isEmpty }!.lowerBound : nil
        // Per layer, where its set ends and its size, in raw memory: through the arrays, each write checked them.
        let ends = u.layerBuffer(layers: L), base = Int32(accessExpert.count), keys = u.keyBuffer(topK: K)
        trace.experts.withUnsafeBufferPointer { ids in
            trace.weights.withUnsafeBufferPointer { weights in
                for l in 0..<L {
                    let n: Int
                    if let lone {
                        n = scratch.appendSorted(ids: ids.baseAddress! + (lone * L + l) * K, weights: sums ? weights.baseAddress! + (lone * L + l) * K : nil,
                                                 topK: K, layerBase: Int32(l * E), keys: keys, weightTotal: &totalWeight)
                        if n == 0 { missingCells += 1 }
                    } else {
                        missingCells += u.add(layer: l, of: parts, ids: ids.baseAddress!,
                                              weights: sums ? weights.baseAddress! : nil, keepsWeights: weighted,
                                              layers: L, topK: K, weightTotal: &totalWeight)
                        n = u.drain(into: &scratch, layerBase: Int32(l * E), weighted: weighted)
                    }
                    ends[l] = base + Int32(scratch.count)
                    ends[L + l] = Int32(n)
                }
            }
        }
        largestSet.withUnsafeMutableBufferPointer { largest in
            for l in 0..<L { largest[l] = max(largest[l], Int(ends[L + l])) }
        }
        if keepsAccesses { layerStart.append(contentsOf: UnsafeBufferPointer(start: ends, count: L)) }
        accessCount += scratch.count
        if !keepsAccesses {
            for i in 0..<scratch.count {
                uses[Int(scratch.expert[i])] += 1
                maxAccessTokens = max(maxAccessTokens, scratch.tokens[i])
            }
            addStepFacts(tokens: stepTokenCount, phase: phase, seq: seq, firstSteps: firstSteps, laterOutputs: laterOutputs,
                         attention: StepAttention(pairs: pairs, kvRead: read, kvHeld: kvHeld ?? read))
            return
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
        addStepFacts(tokens: stepTokenCount, phase: phase, seq: seq, firstSteps: firstSteps, laterOutputs: laterOutputs,
                     attention: StepAttention(pairs: pairs, kvRead: read, kvHeld: kvHeld ?? read))
    }

    /// The per-step columns, kept in either mode.
    private mutating func addStepFacts(tokens count: Int, phase: Phase, seq: Int32, firstSteps: Int, laterOutputs: Int,
                                       attention: StepAttention) {
        tokens += count
        stepTokens.append(Int32(count))
        stepPhase.append(phase)
        stepSeq.append(seq)
        stepFirstSteps.append(Int32(firstSteps))
        stepLaterOutputs.append(Int32(laterOutputs))
        stepAttention.append(attention)
    }

    /// Adds the trace's steps at batch 1 (SIMULATION.md): a sequence's run of prefill tokens is one step, each
    /// decode token one. `previousSeq`: in a streaming replay, the sequence of the token before this chunk (nil:
    /// none), so that a sequence continuing across chunks does not count a second first token.
    mutating func addSequentialSteps(previousSeq: Int32? = nil) {
        var t = 0
        while t < trace.tokenCount {
            let end = Self.sequentialStepEnd(trace, from: t)
            let starts = (t == 0 ? previousSeq : trace.seq[t - 1]) != trace.seq[t]
            addStep(CollectionOfOne(t..<end), phase: trace.phase[t], seq: trace.seq[t], firstSteps: starts ? 1 : 0,
                    laterOutputs: !starts && trace.phase[t] == .decode ? 1 : 0)
            t = end
        }
    }

    /// Where the batch-1 step that starts at token `t` ends: after the sequence's run of prefill tokens, or after
    /// the one decode token.
    static func sequentialStepEnd(_ trace: RoutingTrace, from t: Int) -> Int {
        var end = t + 1
        if trace.phase[t] == .prefill {
            while end < trace.tokenCount && trace.phase[end] == .prefill && trace.seq[end] == trace.seq[t] { end += 1 }
        }
        return end
    }
}

/// One step's accesses while they are gathered (raw buffers of at least the step's largest possible size).
struct StepScratch {
    let expert: UnsafeMutablePointer<Int32>
    let tokens: UnsafeMutablePointer<Int32>
    let weightMax: UnsafeMutablePointer<Float>?
    let weightSum: UnsafeMutablePointer<Float>?
    let capacity: Int
    var count = 0

    init(capacity: Int, weighted: Bool) {
        self.capacity = max(1, capacity)
        expert = .allocate(capacity: self.capacity); tokens = .allocate(capacity: self.capacity)
        weightMax = weighted ? .allocate(capacity: self.capacity) : nil
        weightSum = weighted ? .allocate(capacity: self.capacity) : nil
    }

    func deallocate() {
        expert.deallocate(); tokens.deallocate(); weightMax?.deallocate(); weightSum?.deallocate()
    }

    /// Appends one token's layer (`topK` ids at `ids`, gate weights at `weights` when the trace has them, kept when
    /// this scratch has room for them) as its expert set, in id order (flat ids `layerBase + e`), each with one
    /// token, its weight as largest and sum; `keys` is room for
    /// `topK` sort keys. The same values, bit for bit, as `UnionScratch.add` then `drain`: weights summed into
    /// `weightTotal` in routing order; each set's largest and summed weight `max(0, w)` and `0 + w`, a repeated id
    /// merged in routing order.
    /// - Returns: the set's size (0 for a null cell).
    @inline(__always)
    mutating func appendSorted(ids: UnsafePointer<UInt16>, weights: UnsafePointer<Float>?, topK K: Int, layerBase: Int32,
                               keys: UnsafeMutablePointer<UInt32>, weightTotal: inout Double) -> Int {
        if ids[0] == TokenRecord.missing { return 0 }
        // (id, slot) packed in one word, so that one array moves, not four, and sorted: five to eight by a sorting
        // network in registers (padded with keys above any id), others by insertion.
        if K >= 5 && K <= 8 {
            for j in 0..<8 { keys[j] = j < K ? UInt32(ids[j]) << 16 | UInt32(truncatingIfNeeded: j) : .max }
            Self.sortEight(keys)
        } else {
            for j in 0..<K {
                let key = UInt32(ids[j]) << 16 | UInt32(truncatingIfNeeded: j)
                var i = j
                while i > 0 && keys[i &- 1] > key { keys[i] = keys[i &- 1]; i &-= 1 }
                keys[i] = key
            }
        }
        let ex = expert + count, tk = tokens + count
        var n = 0, last = Int32(-1)
        if let weights { for j in 0..<K { weightTotal += Double(weights[j]) } }
        if let weights, let weightMax, let weightSum {
            let wMax = weightMax + count, wSum = weightSum + count
            for i in 0..<K {
                let e = layerBase &+ Int32(keys[i] >> 16), w = weights[Int(keys[i] & 0xffff)]
                if e == last {  // a repeated id: one more token of the same access
                    tk[n &- 1] &+= 1; wMax[n &- 1] = max(wMax[n &- 1], w); wSum[n &- 1] += w
                } else {
                    ex[n] = e; tk[n] = 1; wMax[n] = max(0, w); wSum[n] = 0 + w
                    n &+= 1
                    last = e
                }
            }
        } else {
            for i in 0..<K {
                let e = layerBase &+ Int32(keys[i] >> 16)
                if e == last { tk[n &- 1] &+= 1 } else { ex[n] = e; tk[n] = 1; n &+= 1; last = e }
            }
        }
        count &+= n
        return n
    }

    /// Sorts `k[0..<8]` ascending: Dobbelaere's 19-comparator network of depth 6 (`PlanBuilderTests` checks it on
    /// every 0-1 input, which by the 0-1 principle covers all inputs).
    @inline(__always)
    static func sortEight(_ k: UnsafeMutablePointer<UInt32>) {
        var a0 = k[0], a1 = k[1], a2 = k[2], a3 = k[3], a4 = k[4], a5 = k[5], a6 = k[6], a7 = k[7]
        @inline(__always) func order(_ x: inout UInt32, _ y: inout UInt32) { let low = min(x, y); y = max(x, y); x = low }
        order(&a0, &a2); order(&a1, &a3); order(&a4, &a6); order(&a5, &a7)
        order(&a0, &a4); order(&a1, &a5); order(&a2, &a6); order(&a3, &a7)
        order(&a0, &a1); order(&a2, &a3); order(&a4, &a5); order(&a6, &a7)
        order(&a2, &a4); order(&a3, &a5)
        order(&a1, &a4); order(&a3, &a6)
        order(&a1, &a2); order(&a3, &a4); order(&a5, &a6)
        k[0] = a0; k[1] = a1; k[2] = a2; k[3] = a3; k[4] = a4; k[5] = a5; k[6] = a6; k[7] = a7
    }
}

/// One layer's expert set while a step is compiled: per expert its token count and gate weights, and which experts
/// were touched, as a list and as a bitset, so that the set comes out in id order without sorting. Raw memory, kept
/// across steps: the per-routing updates are the builder's hottest code.
final class UnionScratch {
    let experts: Int
    private let tokens: UnsafeMutablePointer<Int32>
    private let weightMax: UnsafeMutablePointer<Float>
    private let weightSum: UnsafeMutablePointer<Float>
    private let touched: UnsafeMutablePointer<Int32>
    private var touchedCount = 0
    private let words: UnsafeMutablePointer<UInt64>
    private let wordCount: Int

    init(experts: Int) {
        self.experts = experts
        wordCount = (experts + 63) / 64
        tokens = .allocate(capacity: experts); tokens.initialize(repeating: 0, count: experts)
        weightMax = .allocate(capacity: experts); weightMax.initialize(repeating: 0, count: experts)
        weightSum = .allocate(capacity: experts); weightSum.initialize(repeating: 0, count: experts)
        touched = .allocate(capacity: experts)
        words = .allocate(capacity: wordCount); words.initialize(repeating: 0, count: wordCount)
    }

    /// The buffers of the last step, kept for the next (a step at a time allocates nothing once they are large enough).
    private var step: StepScratch?

    deinit {
        tokens.deallocate(); weightMax.deallocate(); weightSum.deallocate(); touched.deallocate(); words.deallocate()
        step?.deallocate(); layerNumbers.deallocate(); keys.deallocate()
    }

    /// Empty buffers for a step of up to `capacity` accesses; hand them back with `keep`.
    func stepBuffer(capacity: Int, weighted: Bool) -> StepScratch {
        if var kept = step, kept.capacity >= capacity, (kept.weightMax != nil) == weighted {
            step = nil
            kept.count = 0
            return kept
        }
        step?.deallocate()
        step = nil
        return StepScratch(capacity: capacity, weighted: weighted)
    }

    func keep(_ buffer: StepScratch) { step?.deallocate(); step = buffer }

    /// Room for one token's sort keys (`StepScratch.appendSorted`), and for two numbers per layer
    /// (`StepPlanBuilder.addStep`'s ends and sizes), kept across steps.
    private var keys = GrowingBuffer<UInt32>(), layerNumbers = GrowingBuffer<Int32>()

    func keyBuffer(topK: Int) -> UnsafeMutablePointer<UInt32> { keys.room(for: max(8, topK)) }  // the network's eight
    func layerBuffer(layers: Int) -> UnsafeMutablePointer<Int32> { layerNumbers.room(for: 2 * layers) }

    /// Adds layer `l` of the tokens in `parts` (trace indices) from the trace's raw ids and weights (nil: none;
    /// each expert's largest and summed weight kept if `keepsWeights`); adds each weight to `weightTotal` in
    /// routing order and returns the cells with no routing. Pointers and the
    /// count are kept in locals: through the object, each store could alias them and the loop would reload
    /// everything per routing.
    @inline(__always)
    func add<Parts: Collection>(layer l: Int, of parts: Parts, ids: UnsafePointer<UInt16>, weights: UnsafePointer<Float>?,
                                keepsWeights: Bool, layers L: Int, topK K: Int, weightTotal: inout Double) -> Int
    where Parts.Element == Range<Int> {
        let tokens = self.tokens, touched = self.touched, words = self.words
        let weightMax = self.weightMax, weightSum = self.weightSum
        var n = touchedCount, missing = 0, weight = weightTotal
        for part in parts {
            for token in part {
                let base = (token * L + l) * K
                if ids[base] == TokenRecord.missing { missing += 1; continue }
                for j in base..<(base + K) {
                    let e = Int(ids[j])
                    if tokens[e] == 0 {
                        touched[n] = Int32(e); n += 1
                        words[e >> 6] |= 1 << UInt64(e & 63)
                    }
                    tokens[e] += 1
                    if let weights {
                        let w = weights[j]
                        if keepsWeights {
                            weightMax[e] = max(weightMax[e], w)
                            weightSum[e] += w
                        }
                        weight += Double(w)
                    }
                }
            }
        }
        touchedCount = n
        weightTotal = weight
        return missing
    }

    /// Appends the set to `scratch` in id order (flat ids `layerBase + e`), clears it, and returns its size.
    func drain(into scratch: inout StepScratch, layerBase: Int32, weighted: Bool) -> Int {
        let n = touchedCount
        if wordCount <= 4 * n {  // reading the bitset costs less than sorting the list
            for w in 0..<wordCount {
                var bits = words[w]
                words[w] = 0
                while bits != 0 {
                    emit(w << 6 | bits.trailingZeroBitCount, into: &scratch, layerBase: layerBase, weighted: weighted)
                    bits &= bits &- 1
                }
            }
        } else {  // a few ids of a very wide layer
            var list = UnsafeMutableBufferPointer(start: touched, count: n)
            list.sort()
            for e in list {
                words[Int(e) >> 6] = 0
                emit(Int(e), into: &scratch, layerBase: layerBase, weighted: weighted)
            }
        }
        touchedCount = 0
        return n
    }

    @inline(__always) private func emit(_ e: Int, into scratch: inout StepScratch, layerBase: Int32, weighted: Bool) {
        let i = scratch.count
        scratch.expert[i] = layerBase + Int32(e)
        scratch.tokens[i] = tokens[e]
        tokens[e] = 0
        if weighted {
            scratch.weightMax![i] = weightMax[e]; scratch.weightSum![i] = weightSum[e]
            weightMax[e] = 0; weightSum[e] = 0
        }
        scratch.count += 1
    }
}

/// Raw room for at least n elements, reallocated only to grow (contents are not kept); its owner deallocates it.
struct GrowingBuffer<Element> {
    private var base = UnsafeMutablePointer<Element>.allocate(capacity: 0)
    private var capacity = 0

    mutating func room(for n: Int) -> UnsafeMutablePointer<Element> {
        if capacity < n {
            base.deallocate()
            base = .allocate(capacity: n)
            capacity = n
        }
        return base
    }

    func deallocate() { base.deallocate() }
}
