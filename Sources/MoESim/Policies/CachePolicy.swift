/// Ranks resident experts for eviction. The cache (`ExpertMemory`) owns residency and bytes; a policy only orders.
///
///     var lru = LRUPolicy(experts: 256, partitionOf: { _ in 0 }, partitions: 1)
///     lru.didInsert(7, at: 0); lru.didAccess(7, at: 3)
///     let v = lru.victim(in: 0, pinned: pins)
///
/// Hooks follow gem5's replacement-policy verbs: `didInsert` (reset) when an expert becomes resident, `didAccess`
/// (touch) on a hit, `didEvict` (invalidate) when it leaves, `victim` (getVictim) when room is needed. `at` is the
/// global access index of SIMULATION.md's accounting unit, which offline policies use to look up the future.
public protocol CachePolicy {
    /// Called when `expert` is about to be admitted, before room is made for it (before any `victim` call for it):
    /// a policy that adapts to each request does so here (ARC moves its target first, as its paper does).
    mutating func willInsert(_ expert: Int32)
    /// Called when `expert` is admitted, at access `at`.
    mutating func didInsert(_ expert: Int32, at access: Int)
    /// Called when a `Placement` puts `expert` on the GPU before the first step (default: `didInsert` at access 0).
    mutating func didPlace(_ expert: Int32)
    /// Called when access `at` hits `expert`.
    mutating func didAccess(_ expert: Int32, at access: Int)
    /// Called when `expert` leaves memory.
    mutating func didEvict(_ expert: Int32)
    /// The resident, unpinned expert of `partition` to evict, or nil when every candidate is pinned.
    /// - Complexity: O(1) amortised for LRU/FIFO, O(log n) for Belady.
    mutating func victim(in partition: Int, pinned: PinSet) -> Int32?
    /// Whether `expert` is kept for the whole run (a static placement's): a layer that streams frees it only when
    /// nothing else can make room (default: never kept).
    func keepsForRun(_ expert: Int32) -> Bool

    /// Whether the cache is emptied after every layer (no reuse across layers: `on-demand`).
    static var releasesAfterLayer: Bool { get }
    /// Whether a layer's misses are computed only after all of its copies land (MoE-OnDemand), instead of as each lands.
    static var computesAfterAllCopies: Bool { get }
}

extension CachePolicy {
    public static var releasesAfterLayer: Bool { false }
    public static var computesAfterAllCopies: Bool { false }
    public mutating func willInsert(_ expert: Int32) {}
    public mutating func didAccess(_ expert: Int32, at access: Int) {}
    public mutating func didPlace(_ expert: Int32) { didInsert(expert, at: 0) }
    public func keepsForRun(_ expert: Int32) -> Bool { false }
}

/// The experts that may not be evicted now: those of the layer being computed (SIMULATION.md, pinning) and those
/// whose copy is still on the link (bytes in flight cannot be un-sent).
///
/// An epoch stamp per expert makes unpinning a whole layer O(1): advance the epoch.
public struct PinSet {
    let stamps: UnsafeMutablePointer<Int32>
    let epoch: Int32
    /// When each expert's last copy lands (0 when none is in flight), and the current time.
    let landTime: UnsafeMutablePointer<Int64>
    let now: Int64

    @inline(__always) public func contains(_ expert: Int32) -> Bool {
        stamps[Int(expert)] == epoch || landTime[Int(expert)] > now
    }
}
