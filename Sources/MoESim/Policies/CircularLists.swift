/// Doubly-linked lists over a dense array of nodes, each list circular through a sentinel node of its own, so that
/// linking and unlinking take no branch: a sentinel's `next` is its list's first node, its `previous` the last.
/// Both neighbours sit side by side: one cache line per touch. The eviction orders of `LRUPolicy` (a list per
/// partition) and `LFUPolicy` (a list per frequency bucket, and a list of buckets per partition) live here.
///
///     let lists = CircularLists(nodes: experts + partitions, sentinels: experts..<(experts + partitions))
///     lists.insert(5, after: Int32(experts))   // 5 first in partition 0's list
///     lists.unlink(5)
///     lists.deallocate()                        // once, by its owner
struct CircularLists {
    private struct Links {
        var previous: Int32
        var next: Int32
    }
    private let links: UnsafeMutablePointer<Links>

    /// `nodes` nodes, unlinked, of which `sentinels` start as empty lists.
    init(nodes: Int, sentinels: Range<Int>) {
        links = .allocate(capacity: nodes)
        links.initialize(repeating: Links(previous: -1, next: -1), count: nodes)
        for s in sentinels { empty(Int32(s)) }
    }

    /// Frees the nodes; the owner calls it once.
    func deallocate() { links.deallocate() }

    @inline(__always) func next(_ n: Int32) -> Int32 { links[Int(n)].next }
    @inline(__always) func previous(_ n: Int32) -> Int32 { links[Int(n)].previous }

    /// Makes `sentinel`'s list empty (whatever it held is forgotten, not unlinked).
    @inline(__always) func empty(_ sentinel: Int32) { links[Int(sentinel)] = Links(previous: sentinel, next: sentinel) }

    /// Whether `sentinel`'s list is empty.
    @inline(__always) func isEmpty(_ sentinel: Int32) -> Bool { links[Int(sentinel)].next == sentinel }

    /// Links `n` right after node `before` (after a sentinel: first in its list).
    @inline(__always) func insert(_ n: Int32, after before: Int32) {
        let after = links[Int(before)].next
        links[Int(n)] = Links(previous: before, next: after)
        links[Int(after)].previous = n
        links[Int(before)].next = n
    }

    /// Takes `n` out of its list (its own links are left as they were).
    @inline(__always) func unlink(_ n: Int32) {
        let around = links[Int(n)]
        links[Int(around.previous)].next = around.next
        links[Int(around.next)].previous = around.previous
    }
}
