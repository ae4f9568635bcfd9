/// Least-recently-used eviction, or first-in-first-out when `touchesOnAccess` is false.
///
///     var lru = LRUPolicy(cache: CacheShape(experts: 8, capacity: 4 * expertBytes, expertBytes: expertBytes))
///
/// One intrusive doubly-linked list per partition over dense arrays indexed by flat expert id: the head is the most
/// recently used (or inserted), the victim is the first unpinned entry from the tail. With one partition this is a
/// global LRU (mixtral-offloading uses one per layer: a partition per layer). ChampSim `replacement/lru`,
/// libCacheSim `cache/eviction/LRU.c`.
///
/// A class over raw buffers, not a struct of arrays: the replay loop updates the links on every access, and
/// copy-on-write checks there cost a third of its time (docs/performance.md). One instance serves one replay.
///
/// Invariant: every resident expert is in exactly one list, its partition's.
public final class LRUPolicy: CachePolicy {
    private let previous: UnsafeMutablePointer<Int32>
    private let next: UnsafeMutablePointer<Int32>
    private let partitionOf: UnsafeMutablePointer<Int32>
    private let head: UnsafeMutablePointer<Int32>
    private let tail: UnsafeMutablePointer<Int32>
    private let touchesOnAccess: Bool

    public convenience init(cache: CacheShape, touchesOnAccess: Bool = true) {
        self.init(experts: cache.experts, partitionOf: cache.partitionOf, partitions: cache.partitions,
                  touchesOnAccess: touchesOnAccess)
    }

    public init(experts: Int, partitionOf: [Int32], partitions: Int, touchesOnAccess: Bool = true) {
        precondition(partitionOf.count == experts, "one partition per expert")
        previous = .allocate(capacity: experts)
        previous.initialize(repeating: -1, count: experts)
        next = .allocate(capacity: experts)
        next.initialize(repeating: -1, count: experts)
        self.partitionOf = .allocate(capacity: experts)
        self.partitionOf.initialize(from: partitionOf, count: experts)
        head = .allocate(capacity: partitions)
        head.initialize(repeating: -1, count: partitions)
        tail = .allocate(capacity: partitions)
        tail.initialize(repeating: -1, count: partitions)
        self.touchesOnAccess = touchesOnAccess
    }

    deinit {
        previous.deallocate()
        next.deallocate()
        partitionOf.deallocate()
        head.deallocate()
        tail.deallocate()
    }

    @inline(__always) public func didInsert(_ expert: Int32, at access: Int) { pushFront(expert) }

    public func didAccess(_ expert: Int32, at access: Int) {
        guard touchesOnAccess else { return }
        let p = Int(partitionOf[Int(expert)])
        if head[p] == expert { return }
        unlink(expert)
        pushFront(expert)
    }

    public func didEvict(_ expert: Int32) { unlink(expert) }

    @inline(__always) public func victim(in partition: Int, pinned: PinSet) -> Int32? {
        var candidate = tail[partition]
        while candidate >= 0 && pinned.contains(candidate) { candidate = previous[Int(candidate)] }
        return candidate >= 0 ? candidate : nil
    }

    @inline(__always) private func pushFront(_ e: Int32) {
        let p = Int(partitionOf[Int(e)])
        previous[Int(e)] = -1
        next[Int(e)] = head[p]
        if head[p] >= 0 { previous[Int(head[p])] = e } else { tail[p] = e }
        head[p] = e
    }

    @inline(__always) private func unlink(_ e: Int32) {
        let p = Int(partitionOf[Int(e)])
        let before = previous[Int(e)], after = next[Int(e)]
        if before >= 0 { next[Int(before)] = after } else { head[p] = after }
        if after >= 0 { previous[Int(after)] = before } else { tail[p] = before }
        previous[Int(e)] = -1
        next[Int(e)] = -1
    }
}
