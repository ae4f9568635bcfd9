import Foundation

/// `moesim plan` (docs/plan.md): for each strategy, the fewest GPU experts whose replay reaches a target, found by
/// bisection over the expert budget, with the replays it made as the frontier. The budget search assumes the metric
/// improves with the budget; the answer's neighbours are replayed too, and a plan says where they break that.
///
///     let planner = try Planner(trace: trace, plan: StepPlan(trace), base: spec, target: target, margin: 0.3)
///     let plans = try planner.run(policies: [.lru, .pregated], jobs: 2)
///     plans.first { $0.cheapest != nil }?.cheapest?.budgetExperts
public struct Planner: Sendable {
    public let trace: RoutingTrace
    public let plan: StepPlan
    /// Every setting but the strategy and the budget.
    public let base: ReplaySpec
    public let target: PlanTarget
    public let margin: Double
    /// Where the GPU's memory goes, and so the most experts a budget may hold.
    public let memory: MemorySplit
    /// The replays already made (`moesim plan --resume`) and where new ones are recorded; `cell` names this
    /// planner's settings among a plan's `--vary` combinations.
    public var journal: PlanJournal?
    public var cell = 0
    /// The most experts worth searching (a cheaper answer of another `--vary` combination prunes the rest); nil: all
    /// that fit.
    public var ceiling: Int?

    /// - Parameter memoryLimitBytes: GPU memory the plan may use (nil: the hardware's).
    /// - Throws: `ConfigError` when the trace does not fit the model, or no expert fits in GPU memory beside the
    ///   resident weights and the KV cache.
    public init(trace: RoutingTrace, plan: StepPlan, base: ReplaySpec, target: PlanTarget, margin: Double,
                memoryLimitBytes: Double? = nil) throws {
        guard margin >= 0 && margin < 10 else {
            throw ConfigError.invalidValue(field: "--margin", value: "\(margin)", expected: "a share of headroom in 0 … 10 (0.3: 30%)")
        }
        self.trace = trace; self.plan = plan; self.base = base; self.target = target; self.margin = margin
        let extent = PlanExtent(plan)
        memory = MemorySplit(model: base.model, gpuBytes: min(base.hardware.gpuMemoryBytes, memoryLimitBytes ?? .infinity),
                             contextTokens: extent.peakKVHeld, concurrency: base.serving.batchLimit)
        guard memory.expertsThatFit >= 1 else {
            throw ConfigError.invalidValue(field: "hardware.gpu_memory_bytes", value: formatBytes(Int(memory.gpuBytes)),
                                           expected: "room for at least one expert beside \(memory.describe()): a larger GPU or a higher limit")
        }
        if target.metric == .goodput && base.serving.slo == nil {
            throw ConfigError.invalidValue(field: "--target", value: target.description,
                                           expected: "goodput with SLOs (serving.slo_ttft_s and slo_tpot_s, or --slo-ttft and --slo-tpot)")
        }
    }

    /// Each strategy's search, in the order given; `jobs` strategies at once (the answers do not depend on it).
    public func run(policies: [PolicyKind], jobs: Int = 1, progress: (@Sendable (String) -> Void)? = nil) throws -> [StrategyPlan] {
        let slots = Results(count: policies.count)
        DispatchQueue.concurrentPerform(iterations: min(max(1, jobs), max(1, policies.count))) { worker in
            for i in stride(from: worker, to: policies.count, by: max(1, min(jobs, policies.count))) {
                slots.set(i, Result { try search(policies[i]) })
                progress?("planned \(policies[i].rawValue)")
            }
        }
        return try slots.values.map { try $0!.get() }
    }

    /// The fewest experts `policy` needs: bisection between the smallest budget a replay accepts and the most that
    /// fit, then the answer's neighbours.
    public func search(_ policy: PolicyKind) throws -> StrategyPlan {
        var points: [Int: PlanPoint] = [:]
        func replay(_ experts: Int) throws -> PlanPoint {
            if let p = points[experts] { return p }
            var spec = base
            spec.policy = policy
            spec.budget = .experts(experts)
            let key = PlanJournal.Key(cell: cell, policy: policy, experts: experts)
            let replayed: PlanJournal.Replay
            if let kept = journal?.kept[key] {
                replayed = kept
            } else {
                let r = try Replayer.replay(trace: trace, plan: plan, spec: spec)
                replayed = PlanJournal.Replay(figure: target.measure(r), hitRate: r.hitRate, budgetBytes: r.budgetBytes)
                try journal?.record(key, replayed)
            }
            let p = PlanPoint(policy: policy, budgetExperts: experts, budgetBytes: replayed.budgetBytes, figure: replayed.figure,
                              meets: target.meets(replayed.figure, margin: margin), spec: spec, hitRate: replayed.hitRate)
            points[experts] = p
            return p
        }
        var low = try smallestAccepted(policy), high = target.best ? memory.expertsThatFit : min(memory.expertsThatFit, ceiling ?? .max)
        let pruned = high < memory.expertsThatFit
        guard low <= high else { return StrategyPlan(policy: policy, points: [], cheapest: nil, below: nil, irregular: [], pruned: pruned) }
        let top = try replay(high)
        // The best within memory: the most experts that fit (the metric improving with the budget), and one fewer
        // to show where it is not.
        if target.best {
            let down = high > low ? try replay(high - 1) : nil
            let irregular = down.flatMap { d in d.figure.flatMap { f in top.figure.map { t in target.metric.higherIsBetter ? f > t : f < t } } } == true ? [down!] : []
            return StrategyPlan(policy: policy, points: sorted(points), cheapest: top, below: nil, irregular: irregular)
        }
        guard top.meets else { return StrategyPlan(policy: policy, points: sorted(points), cheapest: nil, below: nil, irregular: [], pruned: pruned) }
        if try replay(low).meets { return StrategyPlan(policy: policy, points: sorted(points), cheapest: points[low], below: nil, irregular: []) }
        while high - low > 1 {  // low misses, high meets
            let mid = low + (high - low) / 2
            if try replay(mid).meets { high = mid } else { low = mid }
        }
        // Neighbours: one more expert must meet too, one fewer than the step below must miss too.
        var irregular: [PlanPoint] = []
        if high + 1 <= memory.expertsThatFit, case let up = try replay(high + 1), !up.meets { irregular.append(up) }
        if low - 1 >= 1, let down = try? replay(low - 1), down.meets { irregular.append(down) }
        return StrategyPlan(policy: policy, points: sorted(points), cheapest: points[high], below: points[low], irregular: irregular)
    }

    /// The smallest budget in experts a replay of `policy` accepts (one expert, or one per layer when each layer
    /// has its own partition), found by doubling.
    private func smallestAccepted(_ policy: PolicyKind) throws -> Int {
        var experts = base.scope == .perLayer && policy.supportsPerLayerScope ? base.model.layers : 1
        var spec = base
        spec.policy = policy
        while true {
            spec.budget = .experts(experts)
            do {
                try Replayer.check(trace: trace, plan: plan, spec: spec)
                return experts
            } catch ConfigError.budgetTooSmall {
                guard experts < memory.expertsThatFit else { return experts }
                experts = min(memory.expertsThatFit, experts * 2)
            }
        }
    }

    private func sorted(_ points: [Int: PlanPoint]) -> [PlanPoint] { points.values.sorted { $0.budgetExperts < $1.budgetExperts } }

    /// The strategies' answer: the one with the fewest experts on all GPUs together (budget × GPUs; ties: the better
    /// figure, then the order given); for the best within memory, the best figure (ties: the fewest experts, then the
    /// order given).
    public static func chosen(_ plans: [StrategyPlan], target: PlanTarget) -> StrategyPlan? {
        let reached = plans.filter { $0.cheapest != nil }
        return choose(reached.map { $0.cheapest! }, target: target).map { reached[$0] }
    }

    /// The index of the answer among `answers` (each a strategy's cheapest, of any `--vary` combination), by the rule
    /// of `chosen`.
    public static func choose(_ answers: [PlanPoint], target: PlanTarget) -> Int? {
        answers.indices.min { i, j in
            let a = answers[i], b = answers[j]
            let experts = (a.expertsOnAllGPUs, b.expertsOnAllGPUs)
            let better: Bool? = {
                guard let x = a.figure, let y = b.figure, x != y else { return nil }
                return target.metric.higherIsBetter ? x > y : x < y
            }()
            if target.best, let better { return better }
            if experts.0 != experts.1 { return experts.0 < experts.1 }
            if let better { return better }
            return i < j
        }
    }
}

/// One replayed configuration of a plan's search (replayed now, or read back from the plan's journal on --resume).
public struct PlanPoint: Sendable {
    public let policy: PolicyKind
    public let budgetExperts: Int
    public let budgetBytes: Int
    /// The target metric's figure (nil when the run has none).
    public let figure: Double?
    public let meets: Bool
    /// The settings it was replayed with, and its hit rate.
    public let spec: ReplaySpec
    public let hitRate: Double?
    /// What a plan minimises: the budget on every GPU together.
    public var expertsOnAllGPUs: Int { budgetExperts * spec.hardware.gpus }
}

/// One strategy's search: every replay it made (by budget), the cheapest budget that meets the target and the step
/// below it (nil when none meets, or the smallest budget already does), and neighbours that break monotonicity.
public struct StrategyPlan: Sendable {
    public let policy: PolicyKind
    public let points: [PlanPoint]
    public let cheapest: PlanPoint?
    public let below: PlanPoint?
    /// Replays next to the answer that disagree with a monotone metric: one more expert that misses, or one fewer
    /// than the step below that meets.
    public let irregular: [PlanPoint]
    /// Whether the search stopped below the experts that fit, where a cheaper answer was already known.
    public var pruned = false

    public init(policy: PolicyKind, points: [PlanPoint], cheapest: PlanPoint?, below: PlanPoint?, irregular: [PlanPoint],
                pruned: Bool = false) {
        self.policy = policy; self.points = points; self.cheapest = cheapest; self.below = below
        self.irregular = irregular; self.pruned = pruned
    }

    /// The best figure reached (what a plan reports when none meets the target).
    public func best(_ target: PlanTarget) -> PlanPoint? {
        points.filter { $0.figure != nil }.max { a, b in
            target.metric.higherIsBetter ? a.figure! < b.figure! : a.figure! > b.figure!
        }
    }
}

/// The GPU's memory split as a plan sees it (docs/plan.md): the weights always resident, the KV cache of the
/// longest sequence at the scheduler's concurrency, and the rest for experts.
public struct MemorySplit: Sendable, Equatable {
    public let gpuBytes: Double
    public let residentBytes: Double
    public let kvBytes: Double
    public let expertBytes: Int
    public let totalExperts: Int
    /// Bytes left for experts, and how many whole experts that is (at most every expert).
    public var expertRoomBytes: Double { max(0, gpuBytes - residentBytes - kvBytes) }
    public var expertsThatFit: Int { min(totalExperts, Int((expertRoomBytes / Double(expertBytes)).rounded(.down))) }

    public init(model: ModelProfile, gpuBytes: Double, contextTokens: Int64, concurrency: Int) {
        self.gpuBytes = gpuBytes
        residentBytes = Double(model.residentWeightBytes)
        kvBytes = Double(contextTokens) * model.kvBytesPerToken * Double(max(1, concurrency))
        expertBytes = model.expertBytes
        totalExperts = model.layers * model.experts
    }

    /// "resident weights 2.8 GiB, KV cache 128 MiB (…)", for messages.
    public func describe() -> String {
        "resident weights of \(formatBytes(Int(residentBytes))) and a KV cache of \(formatBytes(Int(kvBytes)))"
    }
}

/// Results written by concurrent workers, one slot each.
private final class Results: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Result<StrategyPlan, Error>?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<StrategyPlan, Error>) { lock.lock(); slots[i] = r; lock.unlock() }
    var values: [Result<StrategyPlan, Error>?] { lock.lock(); defer { lock.unlock() }; return slots }
}
