import HeapModule

/// Belady's optimal offline eviction (Belady 1966): evict the resident expert whose next use is farthest away.
///
///     var opt = BeladyPolicy(experts: 8192, future: FutureIndex(plan))
///
/// With equal-size experts and demand fetching it misses least of all policies that obey pinning, so it bounds
/// every demand-fetch cache. A max-heap of (next use, expert) with lazy deletion: stale entries are skipped when
/// popped, and the heap is rebuilt when they outnumber live ones. Ties go to the lower flat id (the first candidate).
/// libCacheSim `cache/eviction/Belady.c`.
///
/// Invariant: each resident expert has one live heap entry, keyed by its current next use.
public struct BeladyPolicy: CachePolicy {
    private let nextUse: [Int32]
    /// Current next use per resident expert, -1 when absent.
    private var current: [Int32]
    private var heap = Heap<UInt64>()
    private var resident = 0
    private var stash: [UInt64] = []

    public init(experts: Int, future: FutureIndex) {
        nextUse = future.nextUse
        current = Array(repeating: -1, count: experts)
    }

    @inline(__always) private static func key(_ next: Int32, _ expert: Int32) -> UInt64 {
        UInt64(UInt32(next)) << 32 | UInt64(UInt32.max - UInt32(expert))  // max-heap: the lower id wins ties
    }

    public mutating func didInsert(_ expert: Int32, at access: Int) {
        resident += 1
        touch(expert, at: access)
    }

    public mutating func didAccess(_ expert: Int32, at access: Int) { touch(expert, at: access) }

    public mutating func didEvict(_ expert: Int32) {
        current[Int(expert)] = -1
        resident -= 1
    }

    public mutating func victim(in partition: Int, pinned: PinSet) -> Int32? {
        defer {
            for entry in stash { heap.insert(entry) }
            stash.removeAll(keepingCapacity: true)
        }
        while let top = heap.popMax() {
            let expert = Int32(truncatingIfNeeded: UInt32.max - UInt32(truncatingIfNeeded: top))
            let next = Int32(truncatingIfNeeded: top >> 32)
            guard current[Int(expert)] == next else { continue }  // stale
            if pinned.contains(expert) { stash.append(top); continue }
            return expert  // the caller evicts it at once; didEvict retires its state
        }
        return nil
    }

    private mutating func touch(_ expert: Int32, at access: Int) {
        let next = nextUse[access]
        current[Int(expert)] = next
        heap.insert(BeladyPolicy.key(next, expert))
        if heap.count > 4 * resident + 1024 { rebuild() }
    }

    private mutating func rebuild() {
        var live: [UInt64] = []
        live.reserveCapacity(resident)
        for (expert, next) in current.enumerated() where next >= 0 { live.append(BeladyPolicy.key(next, Int32(expert))) }
        heap = Heap(live)
    }
}
