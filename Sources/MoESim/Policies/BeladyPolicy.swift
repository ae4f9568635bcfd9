/// Belady's optimal offline eviction (Belady 1966): evict the resident expert whose next use is farthest away.
///
///     let opt = BeladyPolicy(experts: 8192, future: FutureIndex(plan))
///
/// With equal-size experts and demand fetching it misses least of all policies that obey pinning, so it bounds
/// every demand-fetch cache. Residents sit in an indexed max-heap keyed by (next use, lower id first), re-keyed on
/// every access. libCacheSim `cache/eviction/Belady.c` keeps the same `next_access_vtime`.
///
/// Invariant: the heap holds exactly the resident experts, each keyed by its current next use.
public final class BeladyPolicy: CachePolicy {
    private let nextUse: [Int32]
    private let heap: IndexedMaxHeap
    /// Pinned experts lifted out of the heap while a victim is sought (reused, so no call allocates).
    private var aside: [(expert: Int32, key: UInt64)] = []

    public init(experts: Int, future: FutureIndex) {
        nextUse = future.nextUse
        heap = IndexedMaxHeap(capacity: experts)
    }

    /// Farther next use first; among equals the lower id (the first candidate) wins.
    @inline(__always) private static func key(_ next: Int32, _ expert: Int32) -> UInt64 {
        UInt64(UInt32(next)) << 32 | UInt64(UInt32.max - UInt32(expert))
    }

    public func didInsert(_ expert: Int32, at access: Int) { heap.set(expert, key: Self.key(nextUse[access], expert)) }
    public func didAccess(_ expert: Int32, at access: Int) { heap.set(expert, key: Self.key(nextUse[access], expert)) }
    public func didEvict(_ expert: Int32) { heap.remove(expert) }

    public func victim(in partition: Int, pinned: PinSet) -> Int32? {
        // Pinned experts (at most the layer's set) are lifted out while looking, then put back.
        var found: Int32?
        while let top = heap.max {
            if !pinned.contains(top.expert) { found = top.expert; break }
            aside.append(top)
            heap.remove(top.expert)
        }
        for (e, k) in aside { heap.set(e, key: k) }
        aside.removeAll(keepingCapacity: true)
        return found
    }
}
