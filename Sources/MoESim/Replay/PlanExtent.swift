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

    /// The extent of the steps a counting builder formed (`SequentialFacts`).
    init(counted builder: StepPlanBuilder) {
        layers = builder.layers
        experts = builder.experts
        largest = Array(repeating: 0, count: builder.layers)
        add(largest: builder.largestSet, accesses: builder.accessCount, maxAccessTokens: builder.maxAccessTokens,
            stepTokens: builder.stepTokens, stepAttention: builder.stepAttention, stepSeq: builder.stepSeq)
    }

    public mutating func add(_ plan: StepPlan) {
        precondition(plan.layers == layers && plan.experts == experts, "a plan of another trace")
        add(largest: plan.largestWorkingSet(), accesses: plan.accesses, maxAccessTokens: plan.accessTokens.max() ?? 0,
            stepTokens: plan.stepTokens, stepAttention: plan.stepAttention, stepSeq: plan.stepSeq)
    }

    private mutating func add(largest sets: [Int], accesses count: Int, maxAccessTokens most: Int32, stepTokens: [Int32],
                              stepAttention: [StepAttention], stepSeq: [Int32]) {
        for (l, n) in sets.enumerated() { largest[l] = max(largest[l], n) }
        steps += stepTokens.count
        accesses += count
        maxAccessTokens = max(maxAccessTokens, most)
        maxStepTokens = max(maxStepTokens, stepTokens.max() ?? 0)
        for (s, attention) in stepAttention.enumerated() {
            attentionPairs += attention.pairs
            if attention.kvHeld > peakKVHeld { peakKVHeld = attention.kvHeld; peakKVSeq = stepSeq[s] }
        }
    }
}

/// What a served run needs of the trace's sequential plan (the budget checks' extent, the totals, how often each
/// expert is routed), counted by the plan's own builder without keeping a single access: a serving scheduler forms
/// its own steps, so the sequential ones are measured, not built.
struct SequentialFacts {
    let extent: PlanExtent
    let totals: TraceTotals
    /// Accesses per flat expert id: what a static placement learns from (`Replayer.expertUses` of the plan).
    let uses: [Int]

    init(_ trace: RoutingTrace) {
        var builder = StepPlanBuilder(trace, keepsAccesses: false)
        builder.addSequentialSteps()
        extent = PlanExtent(counted: builder)
        totals = TraceTotals(counted: builder)
        uses = builder.uses
    }
}
