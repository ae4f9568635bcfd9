/// Belady's optimal offline eviction (Belady 1966): evict the resident expert whose next use is farthest away.
///
///     let opt = BeladyPolicy(experts: 8192, future: FutureIndex(plan))
///
/// With equal-size experts and demand fetching it misses least of all policies that obey pinning, so it bounds
/// every demand-fetch cache; with the budget split per layer (`cache_scope`) it evicts within the layer's share,
/// the bound for per-layer caches. Residents sit in an indexed max-heap per partition keyed by (next use, lower
/// id first), re-keyed on every access. libCacheSim `cache/eviction/Belady.c` keeps the same `next_access_vtime`.
///
/// Invariant: each partition's heap holds exactly its resident experts, each keyed by its current next use.
public final class BeladyPolicy: CachePolicy {
    private let nextUse: [Int32]
    private let partitionOf: [Int32]
    private let heaps: [IndexedMaxHeap]

    /// - Parameters:
    ///   - partitionOf: each expert's partition (all 0 for one global cache).
    ///   - partitions: how many partitions there are.
    public convenience init(cache: CacheShape, future: FutureIndex) {
        self.init(experts: cache.experts, partitionOf: cache.partitionOf, partitions: cache.partitions, future: future)
    }

    public init(experts: Int, partitionOf: [Int32]? = nil, partitions: Int = 1, future: FutureIndex) {
        nextUse = future.nextUse
        self.partitionOf = partitionOf ?? Array(repeating: 0, count: experts)
        heaps = (0..<partitions).map { _ in IndexedMaxHeap(capacity: experts) }
    }

    /// Farther next use first; among equals the lower id (the first candidate) wins.
    @inline(__always) private static func key(_ next: Int32, _ expert: Int32) -> UInt64 {
        UInt64(UInt32(next)) << 32 | UInt64(UInt32.max - UInt32(expert))
    }

    @inline(__always) private func heap(of expert: Int32) -> IndexedMaxHeap { heaps[Int(partitionOf[Int(expert)])] }

    public func didInsert(_ expert: Int32, at access: Int) { heap(of: expert).set(expert, key: Self.key(nextUse[access], expert)) }
    public func didAccess(_ expert: Int32, at access: Int) { heap(of: expert).set(expert, key: Self.key(nextUse[access], expert)) }
    public func didEvict(_ expert: Int32) { heap(of: expert).remove(expert) }

    public func victim(in partition: Int, pinned: PinSet) -> Int32? { heaps[partition].maxUnpinned(pinned) }
}
