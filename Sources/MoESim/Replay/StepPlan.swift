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
    /// Per step, the sequences whose first step it is (its latency is each one's time to first token), and the
    /// output tokens in it that are not their sequence's first (its latency is each one's time per output token).
    public private(set) var stepFirstSteps: [Int32] = []
    public private(set) var stepLaterOutputs: [Int32] = []
    /// Per step, attention's work and the KV cache it holds.
    public private(set) var stepAttention: [StepAttention] = []
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
    /// Σ of every routed gate weight, in routing order (0 without weights), and whether the trace records weights:
    /// both kept also in a plan that leaves the per-access weights out (`StepPlan(_:weights:)`).
    public private(set) var totalWeight = 0.0
    public private(set) var recordsWeights = false

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
    ///   - weights: false to leave the per-access gate weights out, for strategies that do not read them
    ///     (`PolicyKind.readsGateWeights`): the plan is built faster and holds half the bytes.
    public init(_ trace: RoutingTrace, previousSeq: Int32? = nil, weights: Bool = true) {
        var builder = StepPlanBuilder(trace, weights: weights)
        builder.addSequentialSteps(previousSeq: previousSeq)
        self.init(builder)
    }

    /// The plan `builder` has put together.
    init(_ builder: StepPlanBuilder) {
        builder.awaitPrefault()
        layers = builder.layers; experts = builder.experts
        tokens = builder.tokens
        missingCells = builder.missingCells
        largestSet = builder.largestSet
        layerStart = builder.layerStart
        accessExpert = builder.accessExpert
        accessTokens = builder.accessTokens
        accessWeightMax = builder.accessWeightMax
        accessWeightSum = builder.accessWeightSum
        totalWeight = builder.totalWeight
        recordsWeights = builder.sumsWeights
        predictionStart = builder.predictionStart
        predictedExpert = builder.predictedExpert
        stepTokens = builder.stepTokens
        stepPhase = builder.stepPhase
        stepSeq = builder.stepSeq
        stepFirstSteps = builder.stepFirstSteps
        stepLaterOutputs = builder.stepLaterOutputs
        stepAttention = builder.stepAttention
    }

    /// The parts of `plan` the GPUs serve under expert parallelism (docs/multigpu.md), built in one pass: each keeps
    /// every step (its tokens, phase and attention: each GPU runs them) and, of each access, the tokens `split`
    /// deals it (plan step s is the run's step `firstStep + s`; a GPU dealt none has no access there); gate-weight
    /// sums in proportion, the largest weight kept; recorded predictions of experts a GPU holds only. The split is
    /// called directly, not through a closure: set-up visits every access twice.
    static func parts(of plan: StepPlan, split: TokenSplit, firstStep: Int = 0) -> [StepPlan] {
        let gpus = split.gpus
        @inline(__always) func deal(_ a: Int, _ s: Int, _ give: (Int, Int32) -> Void) {
            split.forEachShare(plan.accessTokens[a], of: plan.accessExpert[a], step: firstStep + s, give)
        }
        // Two passes over raw buffers: appending through an array of plans checked two buffers' uniqueness per
        // access (a sixth of an 8-GPU run).
        var counts = [Int](repeating: 0, count: gpus)
        for sl in 0..<(plan.layerStart.count - 1) {
            for a in Int(plan.layerStart[sl])..<Int(plan.layerStart[sl + 1]) {
                deal(a, sl / plan.layers) { g, n in if n > 0 { counts[g] += 1 } }
            }
        }
        let weighted = plan.hasWeights
        let experts = counts.map { UnsafeMutablePointer<Int32>.allocate(capacity: max(1, $0)) }
        let tokens = counts.map { UnsafeMutablePointer<Int32>.allocate(capacity: max(1, $0)) }
        let weightMax = counts.map { UnsafeMutablePointer<Float>.allocate(capacity: weighted ? max(1, $0) : 1) }
        let weightSum = counts.map { UnsafeMutablePointer<Float>.allocate(capacity: weighted ? max(1, $0) : 1) }
        defer { for g in 0..<gpus { experts[g].deallocate(); tokens[g].deallocate(); weightMax[g].deallocate(); weightSum[g].deallocate() } }
        var filled = [Int](repeating: 0, count: gpus), starts = filled
        var parts = [StepPlan](repeating: StepPlan(emptyLike: plan), count: gpus)
        for g in 0..<gpus { parts[g].layerStart.reserveCapacity(plan.layerStart.count) }
        for sl in 0..<(plan.layerStart.count - 1) {
            starts = filled
            for a in Int(plan.layerStart[sl])..<Int(plan.layerStart[sl + 1]) {
                deal(a, sl / plan.layers) { g, n in
                    guard n > 0 else { return }
                    let i = filled[g]
                    experts[g][i] = plan.accessExpert[a]
                    tokens[g][i] = n
                    if weighted {
                        weightMax[g][i] = plan.accessWeightMax[a]
                        weightSum[g][i] = plan.accessWeightSum[a] * Float(n) / Float(plan.accessTokens[a])
                    }
                    filled[g] = i + 1
                }
            }
            let l = sl % plan.layers
            for g in 0..<gpus {
                parts[g].layerStart.append(Int32(filled[g]))
                parts[g].largestSet[l] = max(parts[g].largestSet[l], filled[g] - starts[g])
            }
        }
        for g in 0..<gpus {
            parts[g].accessExpert = Array(UnsafeBufferPointer(start: experts[g], count: counts[g]))
            parts[g].accessTokens = Array(UnsafeBufferPointer(start: tokens[g], count: counts[g]))
            if weighted {
                parts[g].accessWeightMax = Array(UnsafeBufferPointer(start: weightMax[g], count: counts[g]))
                parts[g].accessWeightSum = Array(UnsafeBufferPointer(start: weightSum[g], count: counts[g]))
            }
        }
        if plan.hasPredictions {
            for g in 0..<gpus {
                parts[g].predictionStart = [0]
                for sl in 0..<(plan.predictionStart.count - 1) {
                    for i in Int(plan.predictionStart[sl])..<Int(plan.predictionStart[sl + 1]) where split.holds(gpu: g, expert: plan.predictedExpert[i]) {
                        parts[g].predictedExpert.append(plan.predictedExpert[i])
                    }
                    parts[g].predictionStart.append(Int32(parts[g].predictedExpert.count))
                }
            }
        }
        return parts
    }

    /// `plan`'s steps with no accesses yet (`parts(of:)` fills them).
    private init(emptyLike plan: StepPlan) {
        layers = plan.layers; experts = plan.experts
        tokens = plan.tokens
        missingCells = plan.missingCells
        stepTokens = plan.stepTokens; stepPhase = plan.stepPhase; stepSeq = plan.stepSeq
        stepFirstSteps = plan.stepFirstSteps; stepLaterOutputs = plan.stepLaterOutputs; stepAttention = plan.stepAttention
        largestSet = Array(repeating: 0, count: plan.layers)
        totalWeight = plan.totalWeight
        recordsWeights = plan.recordsWeights
    }

    /// The largest number of distinct experts any single step-layer needs at once, per layer (kept from the build:
    /// every replay's budget check asks for it).
    public func largestWorkingSet() -> [Int] { largestSet }
    private var largestSet: [Int] = []
}

/// A step's attention over the context, from its tokens' positions (`pos`): what its cost and the KV cache need.
public struct StepAttention: Sendable, Equatable {
    /// (query, key) pairs: a token at position p attends to p + 1 keys (causal).
    public var pairs: Int64
    /// Tokens of context whose KV cache the step reads: each sequence's, up to its last token in the step.
    public var kvRead: Int64
    /// Tokens of context whose KV cache is on the GPU during the step (a batch's members not in it too).
    public var kvHeld: Int64
}
