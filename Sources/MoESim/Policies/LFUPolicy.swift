/// Least-frequently-used eviction: evict the resident expert accessed least often since it was admitted; among
/// equals, the one touched least recently.
///
///     let lfu = LFUPolicy(cache: shape)
///
/// The classic frequency rule of caching (the LFU of libCacheSim, `cache/eviction/LFU.c`; Lee et al., "LRFU", IEEE
/// Trans. Computers 2001, §2, for its definition and its weakness: experts once hot keep high counts after the
/// workload moves). Counts are "in-cache": an evicted expert starts again from 1 when it returns, so a cache of
/// frequent experts must keep earning its place. SIMULATION.md lists `lfu` beside `lru` and `fifo`.
///
/// Residents sit in an indexed max-heap per partition keyed by (fewest uses, oldest touch), re-keyed on every
/// access, like `BeladyPolicy`. Invariant: each partition's heap holds exactly its resident experts.
public final class LFUPolicy: CachePolicy {
    private let partitionOf: [Int32]
    private let heaps: [IndexedMaxHeap]
    /// Uses of each resident expert since it was admitted.
    private let uses: UnsafeMutablePointer<UInt32>
    /// A clock of touches (admissions and hits): later touches get larger stamps.
    private var clock: UInt64 = 0

    public init(cache: CacheShape) {
        partitionOf = cache.partitionOf
        heaps = (0..<cache.partitions).map { _ in IndexedMaxHeap(capacity: cache.experts) }
        uses = .allocate(capacity: cache.experts)
        uses.initialize(repeating: 0, count: cache.experts)
    }

    deinit { uses.deallocate() }

    /// Fewer uses first, then the older touch: the largest key is the victim. Uses take the top 20 bits (counts
    /// above 2^20 − 1 tie, then recency decides), the touch clock the other 44 (1.7e13 touches).
    @inline(__always) private func key(_ e: Int32) -> UInt64 {
        let mostUses: UInt64 = (1 << 20) - 1, clockMask: UInt64 = (1 << 44) - 1
        return (mostUses - min(UInt64(uses[Int(e)]), mostUses)) << 44 | (clockMask - (clock & clockMask))
    }

    @inline(__always) private func touch(_ e: Int32) {
        clock &+= 1
        heaps[Int(partitionOf[Int(e)])].set(e, key: key(e))
    }

    public func didInsert(_ expert: Int32, at access: Int) {
        uses[Int(expert)] = 1
        touch(expert)
    }

    public func didAccess(_ expert: Int32, at access: Int) {
        if uses[Int(expert)] < UInt32.max { uses[Int(expert)] += 1 }
        touch(expert)
    }

    public func didEvict(_ expert: Int32) {
        heaps[Int(partitionOf[Int(expert)])].remove(expert)
        uses[Int(expert)] = 0
    }

    public func victim(in partition: Int, pinned: PinSet) -> Int32? { heaps[partition].maxUnpinned(pinned) }
}
