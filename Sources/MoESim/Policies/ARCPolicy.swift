/// Adaptive Replacement Cache (Megiddo and Modha, FAST 2003): balances recency and frequency by keeping experts seen
/// once (T1) apart from experts seen again (T2), and learning from the ghosts of recent evictions (B1, B2) how much
/// room each deserves.
///
///     let arc = ARCPolicy(experts: 8192, partitionOf: zeros, capacities: [64])
///
/// Each partition (one per cache partition, capacity in experts) runs its own ARC. A new expert goes to T1, a hit or
/// a ghost hit to T2; the victim comes from T1 while T1 is larger than the target `p`, otherwise from T2 (the other
/// list when every candidate is pinned). A hit in ghost list B1 raises `p`, one in B2 lowers it. Ghosts are bounded
/// as in the paper: |T1| + |B1| <= c and the four lists together <= 2c. Fate (arXiv 2502.12224) uses ARC for its
/// expert cache.
///
/// Invariant: every expert is in at most one of the four lists; resident experts are exactly those in T1 or T2.
public final class ARCPolicy: CachePolicy {
    private static let none: UInt8 = 0, t1: UInt8 = 1, t2: UInt8 = 2, b1: UInt8 = 3, b2: UInt8 = 4
    private let previous: UnsafeMutablePointer<Int32>
    private let next: UnsafeMutablePointer<Int32>
    private let list: UnsafeMutablePointer<UInt8>
    private let partitionOf: UnsafeMutablePointer<Int32>
    /// Per partition and list (index partition * 5 + list): head (most recent), tail and length.
    private var head: [Int32], tail: [Int32], length: [Int]
    private var target: [Double]
    private let capacity: [Int]

    /// - Parameter cache: ARC's lists are sized in whole experts: each partition's bytes over the expert size.
    public convenience init(cache: CacheShape) {
        self.init(experts: cache.experts, partitionOf: cache.partitionOf,
                  capacities: cache.capacities.map { $0 / cache.expertBytes })
    }

    public init(experts: Int, partitionOf: [Int32], capacities: [Int]) {
        previous = .allocate(capacity: experts); previous.initialize(repeating: -1, count: experts)
        next = .allocate(capacity: experts); next.initialize(repeating: -1, count: experts)
        list = .allocate(capacity: experts); list.initialize(repeating: ARCPolicy.none, count: experts)
        self.partitionOf = .allocate(capacity: experts)
        self.partitionOf.initialize(from: partitionOf, count: experts)
        let slots = capacities.count * 5
        head = Array(repeating: -1, count: slots); tail = Array(repeating: -1, count: slots)
        length = Array(repeating: 0, count: slots)
        target = Array(repeating: 0, count: capacities.count)
        capacity = capacities.map { max(1, $0) }
    }

    deinit { previous.deallocate(); next.deallocate(); list.deallocate(); partitionOf.deallocate() }

    public func didInsert(_ expert: Int32, at access: Int) {
        let p = Int(partitionOf[Int(expert)]), c = Double(capacity[p])
        switch list[Int(expert)] {
        case ARCPolicy.b1:
            target[p] = min(c, target[p] + max(Double(count(p, ARCPolicy.b2)) / Double(max(1, count(p, ARCPolicy.b1))), 1))
            move(expert, to: ARCPolicy.t2)
        case ARCPolicy.b2:
            target[p] = max(0, target[p] - max(Double(count(p, ARCPolicy.b1)) / Double(max(1, count(p, ARCPolicy.b2))), 1))
            move(expert, to: ARCPolicy.t2)
        default:
            // A new expert: trim the ghosts first, as the paper's case IV does.
            let cap = capacity[p]
            if count(p, ARCPolicy.t1) + count(p, ARCPolicy.b1) >= cap, let g = lru(p, ARCPolicy.b1) { unlink(g) }
            else if count(p, ARCPolicy.t1) + count(p, ARCPolicy.t2) + count(p, ARCPolicy.b1) + count(p, ARCPolicy.b2) >= 2 * cap,
                    let g = lru(p, ARCPolicy.b2) { unlink(g) }
            move(expert, to: ARCPolicy.t1)
        }
    }

    public func didAccess(_ expert: Int32, at access: Int) { move(expert, to: ARCPolicy.t2) }

    /// The expert leaves memory and becomes a ghost of the list it was in.
    public func didEvict(_ expert: Int32) {
        switch list[Int(expert)] {
        case ARCPolicy.t1: move(expert, to: ARCPolicy.b1)
        case ARCPolicy.t2: move(expert, to: ARCPolicy.b2)
        default: break
        }
    }

    public func victim(in partition: Int, pinned: PinSet) -> Int32? {
        let fromT1 = count(partition, ARCPolicy.t1) > 0 && Double(count(partition, ARCPolicy.t1)) > target[partition]
        let first = fromT1 ? ARCPolicy.t1 : ARCPolicy.t2, second = fromT1 ? ARCPolicy.t2 : ARCPolicy.t1
        return unpinnedLRU(partition, first, pinned) ?? unpinnedLRU(partition, second, pinned)
    }

    private func slot(_ p: Int, _ l: UInt8) -> Int { p * 5 + Int(l) }
    private func count(_ p: Int, _ l: UInt8) -> Int { length[slot(p, l)] }
    private func lru(_ p: Int, _ l: UInt8) -> Int32? { let t = tail[slot(p, l)]; return t >= 0 ? t : nil }

    private func unpinnedLRU(_ p: Int, _ l: UInt8, _ pinned: PinSet) -> Int32? {
        var candidate = tail[slot(p, l)]
        while candidate >= 0 && pinned.contains(candidate) { candidate = previous[Int(candidate)] }
        return candidate >= 0 ? candidate : nil
    }

    /// Moves `e` to the most recent end of list `l` of its partition.
    private func move(_ e: Int32, to l: UInt8) {
        unlink(e)
        let s = slot(Int(partitionOf[Int(e)]), l)
        previous[Int(e)] = -1
        next[Int(e)] = head[s]
        if head[s] >= 0 { previous[Int(head[s])] = e } else { tail[s] = e }
        head[s] = e
        length[s] += 1
        list[Int(e)] = l
    }

    private func unlink(_ e: Int32) {
        let l = list[Int(e)]
        guard l != ARCPolicy.none else { return }
        let s = slot(Int(partitionOf[Int(e)]), l)
        let before = previous[Int(e)], after = next[Int(e)]
        if before >= 0 { next[Int(before)] = after } else { head[s] = after }
        if after >= 0 { previous[Int(after)] = before } else { tail[s] = before }
        previous[Int(e)] = -1
        next[Int(e)] = -1
        length[s] -= 1
        list[Int(e)] = ARCPolicy.none
    }
}
