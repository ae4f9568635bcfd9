/// Adaptive Replacement Cache (Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003):
/// balances recency and frequency by keeping experts seen once (T1) apart from experts seen again (T2), and learning
/// from the ghosts of recent evictions (B1, B2) how much room each deserves.
///
///     let arc = ARCPolicy(experts: 8192, partitionOf: zeros, capacities: [64])
///
/// Each partition (one per cache partition, capacity c in experts) runs its own ARC, as the paper's Figure 1 states
/// it for a request for x (`willInsert`, then `victim` while room is needed, then `didInsert`):
/// - a hit (x in T1 or T2) moves x to T2's most recent end (`didAccess`);
/// - x in ghost list B1: first p ← min(c, p + max(1, |B2| / |B1|)); x in B2: first p ← max(0, p − max(1, |B1| / |B2|));
/// - x in no list: if |T1| + |B1| ≥ c, the oldest ghost of B1 is dropped when |T1| < c, otherwise the T1 victim
///   leaves no ghost; else if the four lists hold ≥ 2c, the oldest ghost of B2 is dropped;
/// - REPLACE: the victim is T1's least recent when T1 is non-empty and |T1| > p, or |T1| = p and x is in B2;
///   otherwise T2's (the other list's when every candidate is pinned); it becomes a ghost of its list;
/// - x goes to T2 after a ghost hit, to T1 otherwise.
/// p is a real number (the adaptations divide list lengths). Fate (arXiv 2502.12224) uses ARC for its expert cache.
///
/// Invariant: every expert is in at most one of the four lists; resident experts are exactly those in T1 or T2.
public final class ARCPolicy: CachePolicy {
    private static let none: UInt8 = 0, t1: UInt8 = 1, t2: UInt8 = 2, b1: UInt8 = 3, b2: UInt8 = 4
    private let previous: UnsafeMutablePointer<Int32>
    private let next: UnsafeMutablePointer<Int32>
    private let list: UnsafeMutablePointer<UInt8>
    private let partitionOf: UnsafeMutablePointer<Int32>
    /// Per partition and list (index partition * 5 + list): head (most recent), tail and length. Raw buffers, like
    /// the per-expert links: arrays in a class cost a uniqueness check per write on every access.
    private let head: UnsafeMutablePointer<Int32>, tail: UnsafeMutablePointer<Int32>, length: UnsafeMutablePointer<Int>
    private let target: UnsafeMutablePointer<Double>
    private let capacity: UnsafeMutablePointer<Int>
    /// Per partition, for the request being served: whether x is a ghost of B2 (REPLACE's tie rule), and whether
    /// the next T1 victim leaves no ghost (the paper's case IV with T1 full).
    private let incomingInB2: UnsafeMutablePointer<Bool>
    private let dropNextT1Ghost: UnsafeMutablePointer<Bool>

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
        let slots = capacities.count * 5, partitions = capacities.count
        head = .allocate(capacity: slots); head.initialize(repeating: -1, count: slots)
        tail = .allocate(capacity: slots); tail.initialize(repeating: -1, count: slots)
        length = .allocate(capacity: slots); length.initialize(repeating: 0, count: slots)
        target = .allocate(capacity: partitions); target.initialize(repeating: 0, count: partitions)
        capacity = .allocate(capacity: partitions)
        for (p, c) in capacities.enumerated() { (capacity + p).initialize(to: max(1, c)) }
        incomingInB2 = .allocate(capacity: partitions); incomingInB2.initialize(repeating: false, count: partitions)
        dropNextT1Ghost = .allocate(capacity: partitions); dropNextT1Ghost.initialize(repeating: false, count: partitions)
    }

    deinit {
        previous.deallocate(); next.deallocate(); list.deallocate(); partitionOf.deallocate()
        head.deallocate(); tail.deallocate(); length.deallocate(); target.deallocate(); capacity.deallocate()
        incomingInB2.deallocate(); dropNextT1Ghost.deallocate()
    }

    /// A request for `expert`, which is not resident: the target adapts to a ghost hit, or the ghosts are trimmed for
    /// a new expert, before any victim is chosen.
    public func willInsert(_ expert: Int32) {
        let p = Int(partitionOf[Int(expert)]), c = capacity[p]
        let t1 = count(p, ARCPolicy.t1), b1 = count(p, ARCPolicy.b1), b2 = count(p, ARCPolicy.b2)
        incomingInB2[p] = list[Int(expert)] == ARCPolicy.b2
        switch list[Int(expert)] {
        case ARCPolicy.b1:
            target[p] = min(Double(c), target[p] + max(1, Double(b2) / Double(b1)))
        case ARCPolicy.b2:
            target[p] = max(0, target[p] - max(1, Double(b1) / Double(b2)))
        default:
            if t1 + b1 >= c {
                if t1 < c, let g = lru(p, ARCPolicy.b1) { unlink(g) } else { dropNextT1Ghost[p] = true }
            } else if t1 + count(p, ARCPolicy.t2) + b1 + b2 >= 2 * c, let g = lru(p, ARCPolicy.b2) {
                unlink(g)
            }
        }
    }

    /// `expert` is admitted: to T2 after a ghost hit, to T1 otherwise.
    public func didInsert(_ expert: Int32, at access: Int) {
        let p = Int(partitionOf[Int(expert)])
        let ghost = list[Int(expert)] == ARCPolicy.b1 || list[Int(expert)] == ARCPolicy.b2
        move(expert, to: ghost ? ARCPolicy.t2 : ARCPolicy.t1)
        incomingInB2[p] = false
        dropNextT1Ghost[p] = false
    }

    public func didAccess(_ expert: Int32, at access: Int) { move(expert, to: ARCPolicy.t2) }

    /// The expert leaves memory and becomes a ghost of the list it was in (a T1 victim of case IV with T1 full
    /// leaves none).
    public func didEvict(_ expert: Int32) {
        let p = Int(partitionOf[Int(expert)])
        switch list[Int(expert)] {
        case ARCPolicy.t1 where dropNextT1Ghost[p]:
            unlink(expert)
            dropNextT1Ghost[p] = false
        case ARCPolicy.t1: move(expert, to: ARCPolicy.b1)
        case ARCPolicy.t2: move(expert, to: ARCPolicy.b2)
        default: break
        }
    }

    public func victim(in partition: Int, pinned: PinSet) -> Int32? {
        let t1 = Double(count(partition, ARCPolicy.t1)), p = target[partition]
        let fromT1 = t1 > 0 && (t1 > p || (incomingInB2[partition] && t1 == p))
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
    @inline(__always) private func move(_ e: Int32, to l: UInt8) {
        unlink(e)
        let s = slot(Int(partitionOf[Int(e)]), l)
        previous[Int(e)] = -1
        next[Int(e)] = head[s]
        if head[s] >= 0 { previous[Int(head[s])] = e } else { tail[s] = e }
        head[s] = e
        length[s] += 1
        list[Int(e)] = l
    }

    @inline(__always) private func unlink(_ e: Int32) {
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
