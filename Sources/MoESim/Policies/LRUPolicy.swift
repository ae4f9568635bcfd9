/// Least-recently-used eviction, or first-in-first-out when `touchesOnAccess` is false.
///
///     var lru = LRUPolicy(cache: CacheShape(experts: 8, capacity: 4 * expertBytes, expertBytes: expertBytes))
///
/// One intrusive doubly-linked list per partition over a dense array indexed by flat expert id: the head is the most
/// recently used (or inserted), the victim is the first unpinned entry from the tail. With one partition this is a
/// global LRU (mixtral-offloading uses one per layer: a partition per layer). ChampSim `replacement/lru`,
/// libCacheSim `cache/eviction/LRU.c`.
///
/// A class over raw buffers, not a struct of arrays: the replay loop updates the links on every access, and
/// copy-on-write checks there cost a third of its time (docs/performance.md). One instance serves one replay.
///
/// Invariant: every resident expert is in exactly one list, its partition's.
public final class LRUPolicy: CachePolicy {
    /// Each expert's neighbours, then one sentinel per partition (`experts + p`): the lists are circular through
    /// their sentinel, so linking and unlinking take no branch (the sentinel's `next` is the head, its `previous`
    /// the tail). Both neighbours side by side: one cache line per touch.
    private let links: UnsafeMutablePointer<Neighbours>
    private let sentinelOf: UnsafeMutablePointer<Int32>
    private let experts: Int
    private let touchesOnAccess: Bool

    private struct Neighbours {
        var previous: Int32
        var next: Int32
    }

    public convenience init(cache: CacheShape, touchesOnAccess: Bool = true) {
        self.init(experts: cache.experts, partitionOf: cache.partitionOf, partitions: cache.partitions,
                  touchesOnAccess: touchesOnAccess)
    }

    public init(experts: Int, partitionOf: [Int32], partitions: Int, touchesOnAccess: Bool = true) {
        precondition(partitionOf.count == experts, "one partition per expert")
        self.experts = experts
        links = .allocate(capacity: experts + partitions)
        links.initialize(repeating: Neighbours(previous: -1, next: -1), count: experts)
        for p in 0..<partitions {
            let s = Int32(experts + p)
            (links + experts + p).initialize(to: Neighbours(previous: s, next: s))  // an empty list
        }
        sentinelOf = .allocate(capacity: experts)
        for e in 0..<experts { (sentinelOf + e).initialize(to: Int32(experts) + partitionOf[e]) }
        self.touchesOnAccess = touchesOnAccess
    }

    deinit {
        links.deallocate()
        sentinelOf.deallocate()
    }

    @inline(__always) public func didInsert(_ expert: Int32, at access: Int) { pushFront(expert) }

    @inline(__always) public func didAccess(_ expert: Int32, at access: Int) {
        guard touchesOnAccess else { return }
        unlink(expert)
        pushFront(expert)
    }

    @inline(__always) public func didEvict(_ expert: Int32) { unlink(expert) }

    @inline(__always) public func victim(in partition: Int, pinned: PinSet) -> Int32? {
        let sentinel = Int32(truncatingIfNeeded: experts &+ partition)  // fits: `init` made it
        var candidate = links[experts &+ partition].previous
        while candidate != sentinel && pinned.contains(candidate) { candidate = links[Int(candidate)].previous }
        return candidate != sentinel ? candidate : nil
    }

    @inline(__always) private func pushFront(_ e: Int32) {
        let sentinel = sentinelOf[Int(e)], first = links[Int(sentinel)].next
        links[Int(e)] = Neighbours(previous: sentinel, next: first)
        links[Int(first)].previous = e
        links[Int(sentinel)].next = e
    }

    @inline(__always) private func unlink(_ e: Int32) {
        let around = links[Int(e)]
        links[Int(around.previous)].next = around.next
        links[Int(around.next)].previous = around.previous
    }
}
