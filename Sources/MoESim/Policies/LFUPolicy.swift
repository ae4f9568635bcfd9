/// Least-frequently-used eviction: evict the resident expert accessed least often since it was admitted; among
/// equals, the one touched least recently.
///
///     let lfu = LFUPolicy(cache: shape)
///
/// The classic frequency rule of caching (the LFU of libCacheSim, `cache/eviction/LFU.c`; Lee et al., "LRFU", IEEE
/// Trans. Computers 2001, §2, for its definition and its weakness: experts once hot keep high counts after the
/// workload moves). Counts are "in-cache": an evicted expert starts again from 1 when it returns, so a cache of
/// frequent experts must keep earning its place. SIMULATION.md lists `lfu` beside `lru` and `fifo`. Counts above
/// 2^20 − 1 tie, and recency decides among them.
///
/// Each partition keeps a list of frequency buckets, fewest uses first, and each bucket a list of its experts,
/// least recently touched first (the O(1) LFU of Shah, Mitra and Matani, 2010): an access moves an expert to the
/// end of the next bucket, and the victim is the first unpinned expert from the front. Both kinds of list are
/// `CircularLists`, like `LRUPolicy`'s (a sentinel per partition for its buckets, one per bucket for its experts).
/// Invariant: each partition's buckets hold exactly its resident experts, in (uses, touch) order.
public final class LFUPolicy: CachePolicy {
    /// Counts at or above this tie (the largest count the victim order tells apart): 2^20 − 1; a test lowers it.
    let mostUses: UInt32

    private let experts: Int
    /// Per bucket b (node b, a bucket per expert at most: a partition never has more buckets than experts) its
    /// neighbours, fewer uses first, in its partition's list, whose sentinel is node `experts + p`.
    private let buckets: CircularLists
    /// Per expert e (node e) its neighbours in its bucket's list, least recent first, whose sentinel is node
    /// `experts + b`.
    private let touches: CircularLists
    /// Per expert, its uses since it was admitted (0 when not resident) and its bucket (-1).
    private let uses: UnsafeMutablePointer<UInt32>
    private let bucketOf: UnsafeMutablePointer<Int32>
    /// Each bucket's count (0 for a partition's sentinel).
    private let bucketUses: UnsafeMutablePointer<UInt32>
    /// The sentinel of each expert's partition's buckets.
    private let partitionSentinel: UnsafeMutablePointer<Int32>
    private var freeBuckets: ExpertList

    public init(cache: CacheShape, mostUses: UInt32 = (1 << 20) - 1) {
        self.mostUses = max(1, mostUses)
        experts = cache.experts
        let sentinels = experts..<(experts + cache.partitions)
        buckets = CircularLists(nodes: sentinels.upperBound, sentinels: sentinels)
        touches = CircularLists(nodes: 2 * experts, sentinels: 0..<0)  // a bucket's list is emptied when it is taken
        uses = .allocate(capacity: experts)
        uses.initialize(repeating: 0, count: experts)
        bucketOf = .allocate(capacity: experts)
        bucketOf.initialize(repeating: -1, count: experts)
        bucketUses = .allocate(capacity: sentinels.upperBound)
        bucketUses.initialize(repeating: 0, count: sentinels.upperBound)
        partitionSentinel = .allocate(capacity: experts)
        for e in 0..<experts { (partitionSentinel + e).initialize(to: Int32(experts) + cache.partitionOf[e]) }
        freeBuckets = ExpertList(capacity: experts)
        for b in (0..<experts).reversed() { freeBuckets.append(Int32(b)) }
    }

    deinit {
        buckets.deallocate(); touches.deallocate(); uses.deallocate(); bucketOf.deallocate()
        bucketUses.deallocate(); partitionSentinel.deallocate(); freeBuckets.deallocate()
    }

    public func didInsert(_ expert: Int32, at access: Int) {
        uses[Int(expert)] = 1
        let sentinel = partitionSentinel[Int(expert)], first = buckets.next(sentinel)
        append(expert, to: bucketUses[Int(first)] == 1 ? first : newBucket(uses: 1, after: sentinel))
    }

    public func didAccess(_ expert: Int32, at access: Int) {
        if uses[Int(expert)] < UInt32.max { uses[Int(expert)] += 1 }
        let from = bucketOf[Int(expert)], count = min(uses[Int(expert)], mostUses)
        touches.unlink(expert)
        if count == bucketUses[Int(from)] {  // saturated: only the touch moves it
            append(expert, to: from)
            return
        }
        let next = buckets.next(from)
        append(expert, to: bucketUses[Int(next)] == count ? next : newBucket(uses: count, after: from))
        freeIfEmpty(from)
    }

    public func didEvict(_ expert: Int32) {
        let from = bucketOf[Int(expert)]
        guard from >= 0 else { return }  // not resident: nothing to forget
        touches.unlink(expert)
        freeIfEmpty(from)
        uses[Int(expert)] = 0
        bucketOf[Int(expert)] = -1
    }

    public func victim(in partition: Int, pinned: PinSet) -> Int32? {
        let sentinel = Int32(experts + partition)
        var bucket = buckets.next(sentinel)
        while bucket != sentinel {
            let end = Int32(experts) + bucket
            var candidate = touches.next(end)
            while candidate != end {
                if !pinned.contains(candidate) { return candidate }
                candidate = touches.next(candidate)
            }
            bucket = buckets.next(bucket)
        }
        return nil
    }

    /// Puts `e` at the end of `bucket` (its most recent touch).
    @inline(__always) private func append(_ e: Int32, to bucket: Int32) {
        let end = Int32(experts) + bucket
        touches.insert(e, after: touches.previous(end))
        bucketOf[Int(e)] = bucket
    }

    /// A bucket for `count` uses, linked after bucket (or sentinel) `before`.
    @inline(__always) private func newBucket(uses count: UInt32, after before: Int32) -> Int32 {
        let b = freeBuckets[freeBuckets.count - 1]
        freeBuckets.removeLast()
        bucketUses[Int(b)] = count
        touches.empty(Int32(experts) + b)
        buckets.insert(b, after: before)
        return b
    }

    /// Unlinks and frees `bucket` once its last expert has left.
    @inline(__always) private func freeIfEmpty(_ bucket: Int32) {
        guard touches.isEmpty(Int32(experts) + bucket) else { return }
        buckets.unlink(bucket)
        freeBuckets.append(bucket)
    }
}
