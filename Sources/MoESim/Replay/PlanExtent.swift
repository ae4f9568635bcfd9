/// What the checks before a replay need to know of a trace's steps, gathered in one pass over whole or streamed
/// plans: per layer the largest working set (for the budget), and the counts that bound the simulated time.
///
///     var extent = PlanExtent(plan)
///     extent.add(nextChunk)          // a streaming replay's first pass
public struct PlanExtent: Sendable, Equatable {
    public let layers: Int
    public let experts: Int
    /// Per layer, the most experts one step needs at once (`StepPlan.largestWorkingSet`).
    public private(set) var largest: [Int]
    public private(set) var steps = 0
    public private(set) var accesses = 0
    /// The most tokens of one step routed to one expert, and the most tokens of one step.
    public private(set) var maxAccessTokens: Int32 = 0
    public private(set) var maxStepTokens: Int32 = 0
    /// Attention's (query, key) pairs over every step: the same under any schedule of the tokens, since each pair
    /// comes from one token's position.
    public private(set) var attentionPairs: Int64 = 0
    /// The most tokens of context one step holds in the KV cache, and the sequence of that step.
    public private(set) var peakKVHeld: Int64 = 0
    public private(set) var peakKVSeq: Int32 = 0

    public init(_ plan: StepPlan) {
        layers = plan.layers
        experts = plan.experts
        largest = Array(repeating: 0, count: plan.layers)
        add(plan)
    }

    public mutating func add(_ plan: StepPlan) {
        precondition(plan.layers == layers && plan.experts == experts, "a plan of another trace")
        for (l, n) in plan.largestWorkingSet().enumerated() { largest[l] = max(largest[l], n) }
        steps += plan.steps
        accesses += plan.accesses
        maxAccessTokens = max(maxAccessTokens, plan.accessTokens.max() ?? 0)
        maxStepTokens = max(maxStepTokens, plan.stepTokens.max() ?? 0)
        for (s, attention) in plan.stepAttention.enumerated() {
            attentionPairs += attention.pairs
            if attention.kvHeld > peakKVHeld { peakKVHeld = attention.kvHeld; peakKVSeq = plan.stepSeq[s] }
        }
    }
}
