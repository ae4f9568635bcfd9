/// Which experts are on the GPU before the first step (ENGINE.md: the fourth plug-in beside eviction, prediction
/// and miss handling). Placed experts are admitted to expert memory and the cache at time 0, without a copy.
///
///     let experts = PopularExperts().place(budget)   // Fiddler's placement
///
/// A placement must fit: at most each partition's capacity, in whole experts.
public protocol Placement {
    /// The flat ids to place, in the order they are admitted.
    func place(_ budget: PlacementBudget) -> [Int32]
}

/// What a placement may use: the budget's partitions, the expert size, and how often the trace routes to each expert
/// (computed only when asked: a streaming replay needs a first pass for it).
public struct PlacementBudget {
    public let partitionOf: [Int32]
    public let capacities: [Int]
    public let expertBytes: Int
    public let uses: () -> [Int]
}

extension PlacementBudget {
    /// Each partition's room for placing `candidates`: all of its capacity when every candidate in it fits, else
    /// the capacity less `reserveBytes`, left for the copies of the experts not placed.
    func room<C: Sequence>(placing candidates: C, reserving reserveBytes: Int) -> [Int] where C.Element == Int {
        var needed = Array(repeating: 0, count: capacities.count)
        for e in candidates { needed[Int(partitionOf[e])] += expertBytes }
        return capacities.indices.map { p in needed[p] <= capacities[p] ? capacities[p] : max(0, capacities[p] - reserveBytes) }
    }
}

/// Nothing placed: the cache starts empty (every strategy but `cpu-fallback` and `all-resident`).
public struct EmptyPlacement: Placement {
    public init() {}
    public func place(_ budget: PlacementBudget) -> [Int32] { [] }
}
