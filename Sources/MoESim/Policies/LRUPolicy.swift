/// Least-recently-used eviction, or first-in-first-out when `touchesOnAccess` is false.
///
///     var lru = LRUPolicy(cache: CacheShape(experts: 8, capacity: 4 * expertBytes, expertBytes: expertBytes))
///
/// One intrusive doubly-linked list per partition over a dense array indexed by flat expert id (`CircularLists`): the
/// head is the most recently used (or inserted), the victim is the first unpinned entry from the tail. With one partition this is a
/// global LRU (mixtral-offloading uses one per layer: a partition per layer). ChampSim `replacement/lru`,
/// libCacheSim `cache/eviction/LRU.c`.
///
/// A class over raw buffers, not a struct of arrays: the replay loop updates the links on every access, and
/// copy-on-write checks there cost a third of its time (docs/performance.md). One instance serves one replay.
///
/// Invariant: every resident expert is in exactly one list, its partition's.
public final class LRUPolicy: CachePolicy {
    /// One list per partition, most recent first, over the experts' nodes and a sentinel per partition
    /// (`experts + p`).
    private let lists: CircularLists
    private let sentinelOf: UnsafeMutablePointer<Int32>
    private let experts: Int
    private let touchesOnAccess: Bool

    public convenience init(cache: CacheShape, touchesOnAccess: Bool = true) {
        self.init(experts: cache.experts, partitionOf: cache.partitionOf, partitions: cache.partitions,
                  touchesOnAccess: touchesOnAccess)
    }

    public init(experts: Int, partitionOf: [Int32], partitions: Int, touchesOnAccess: Bool = true) {
        precondition(partitionOf.count == experts, "one partition per expert")
        self.experts = experts
        lists = CircularLists(nodes: experts + partitions, sentinels: experts..<(experts + partitions))
        sentinelOf = .allocate(capacity: experts)
        for e in 0..<experts { (sentinelOf + e).initialize(to: Int32(experts) + partitionOf[e]) }
        self.touchesOnAccess = touchesOnAccess
    }

    deinit {
        lists.deallocate()
        sentinelOf.deallocate()
    }

    @inline(__always) public func didInsert(_ expert: Int32, at access: Int) {
        lists.insert(expert, after: sentinelOf[Int(expert)])
    }

    @inline(__always) public func didAccess(_ expert: Int32, at access: Int) {
        guard touchesOnAccess else { return }
        lists.unlink(expert)
        lists.insert(expert, after: sentinelOf[Int(expert)])
    }

    @inline(__always) public func didEvict(_ expert: Int32) { lists.unlink(expert) }

    @inline(__always) public func victim(in partition: Int, pinned: PinSet) -> Int32? {
        let sentinel = Int32(truncatingIfNeeded: experts &+ partition)  // fits: `init` made it
        var candidate = lists.previous(sentinel)
        while candidate != sentinel && pinned.contains(candidate) { candidate = lists.previous(candidate) }
        return candidate != sentinel ? candidate : nil
    }
}
