/// What an eviction policy is built for: how many experts (flat ids), which partition each belongs to, and each
/// partition's capacity (one partition for a global cache, one per layer for `cache_scope: per-layer`).
///
///     let lru = LRUPolicy(cache: CacheShape(partitionOf: layout.partitionOf, capacities: layout.capacities,
///                                           expertBytes: model.expertBytes))
public struct CacheShape: Sendable {
    public let partitionOf: [Int32]
    /// Bytes per partition.
    public let capacities: [Int]
    /// Bytes of one full-precision expert (capacities in whole experts are `capacities / expertBytes`).
    public let expertBytes: Int

    public init(partitionOf: [Int32], capacities: [Int], expertBytes: Int) {
        self.partitionOf = partitionOf; self.capacities = capacities; self.expertBytes = expertBytes
    }

    /// One global partition over `experts` flat ids.
    public init(experts: Int, capacity: Int, expertBytes: Int) {
        self.init(partitionOf: Array(repeating: 0, count: experts), capacities: [capacity], expertBytes: expertBytes)
    }

    public var experts: Int { partitionOf.count }
    public var partitions: Int { capacities.count }
}
