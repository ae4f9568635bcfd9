/// Least-recently-used eviction, or first-in-first-out when `touchesOnAccess` is false.
///
///     var lru = LRUPolicy(experts: 8, partitionOf: [0, 0, 0, 0, 0, 0, 0, 0], partitions: 1)
///
/// One intrusive doubly-linked list per partition over dense arrays indexed by flat expert id: the head is the most
/// recently used (or inserted), the victim is the first unpinned entry from the tail. With one partition this is a
/// global LRU (mixtral-offloading uses one per layer: a partition per layer). ChampSim `replacement/lru`,
/// libCacheSim `cache/eviction/LRU.c`.
///
/// Invariant: every resident expert is in exactly one list, its partition's.
public struct LRUPolicy: CachePolicy {
    private var previous: [Int32]
    private var next: [Int32]
    private var head: [Int32]
    private var tail: [Int32]
    private let partitionOf: [Int32]
    private let touchesOnAccess: Bool

    public init(experts: Int, partitionOf: [Int32], partitions: Int, touchesOnAccess: Bool = true) {
        previous = Array(repeating: -1, count: experts)
        next = Array(repeating: -1, count: experts)
        head = Array(repeating: -1, count: partitions)
        tail = Array(repeating: -1, count: partitions)
        self.partitionOf = partitionOf
        self.touchesOnAccess = touchesOnAccess
    }

    public mutating func didInsert(_ expert: Int32, at access: Int) { pushFront(expert) }

    public mutating func didAccess(_ expert: Int32, at access: Int) {
        guard touchesOnAccess else { return }
        let p = Int(partitionOf[Int(expert)])
        if head[p] == expert { return }
        unlink(expert)
        pushFront(expert)
    }

    public mutating func didEvict(_ expert: Int32) { unlink(expert) }

    public mutating func victim(in partition: Int, pinned: PinSet) -> Int32? {
        var candidate = tail[partition]
        while candidate >= 0 && pinned.contains(candidate) { candidate = previous[Int(candidate)] }
        return candidate >= 0 ? candidate : nil
    }

    @inline(__always) private mutating func pushFront(_ e: Int32) {
        let p = Int(partitionOf[Int(e)])
        previous[Int(e)] = -1
        next[Int(e)] = head[p]
        if head[p] >= 0 { previous[Int(head[p])] = e } else { tail[p] = e }
        head[p] = e
    }

    @inline(__always) private mutating func unlink(_ e: Int32) {
        let p = Int(partitionOf[Int(e)])
        let before = previous[Int(e)], after = next[Int(e)]
        if before >= 0 { next[Int(before)] = after } else { head[p] = after }
        if after >= 0 { previous[Int(after)] = before } else { tail[p] = before }
        previous[Int(e)] = -1
        next[Int(e)] = -1
    }
}
