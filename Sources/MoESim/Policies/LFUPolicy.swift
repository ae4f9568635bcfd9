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
/// end of the next bucket, and the victim is the first unpinned expert from the front. Every list is circular
/// through a sentinel (one per partition for the buckets, one per bucket for its experts), so linking and unlinking
/// take no branch. Invariant: each partition's buckets hold exactly its resident experts, in (uses, touch) order.
public final class LFUPolicy: CachePolicy {
    /// Counts at or above this tie (the largest count the victim order tells apart): 2^20 − 1; a test lowers it.
    let mostUses: UInt32

    /// Neighbours in a circular list: experts within their bucket, or buckets within their partition.
    private struct Links {
        var previous: Int32
        var next: Int32
    }

    private let experts: Int
    /// Per expert (index e) its neighbours in its bucket, then per bucket (index `experts + b`) the sentinel of
    /// its experts: the lists are circular through the sentinel.
    private let expertLinks: UnsafeMutablePointer<Links>
    /// Per expert, its uses since it was admitted (0 when not resident) and its bucket.
    private let uses: UnsafeMutablePointer<UInt32>
    private let bucketOf: UnsafeMutablePointer<Int32>
    /// Per bucket its neighbours (fewer uses first), then per partition (index `slots + p`) the sentinel of its
    /// buckets; and each bucket's count.
    private let bucketLinks: UnsafeMutablePointer<Links>
    private let bucketUses: UnsafeMutablePointer<UInt32>
    /// The sentinel of each expert's partition's buckets.
    private let partitionSentinel: UnsafeMutablePointer<Int32>
    /// Buckets not in use (a partition never has more buckets than experts).
    private var freeBuckets: ExpertList
    private let slots: Int

    public init(cache: CacheShape, mostUses: UInt32 = (1 << 20) - 1) {
        self.mostUses = max(1, mostUses)
        experts = cache.experts
        slots = cache.experts
        expertLinks = .allocate(capacity: experts + slots)
        expertLinks.initialize(repeating: Links(previous: -1, next: -1), count: experts + slots)
        uses = .allocate(capacity: experts)
        uses.initialize(repeating: 0, count: experts)
        bucketOf = .allocate(capacity: experts)
        bucketOf.initialize(repeating: -1, count: experts)
        bucketLinks = .allocate(capacity: slots + cache.partitions)
        bucketLinks.initialize(repeating: Links(previous: -1, next: -1), count: slots)
        for p in 0..<cache.partitions {
            let s = Int32(slots + p)
            (bucketLinks + slots + p).initialize(to: Links(previous: s, next: s))  // no buckets yet
        }
        bucketUses = .allocate(capacity: slots + cache.partitions)
        bucketUses.initialize(repeating: 0, count: slots + cache.partitions)
        partitionSentinel = .allocate(capacity: experts)
        for e in 0..<experts { (partitionSentinel + e).initialize(to: Int32(slots) + cache.partitionOf[e]) }
        freeBuckets = ExpertList(capacity: slots)
        for b in (0..<slots).reversed() { freeBuckets.append(Int32(b)) }
    }

    deinit {
        expertLinks.deallocate(); uses.deallocate(); bucketOf.deallocate(); bucketLinks.deallocate()
        bucketUses.deallocate(); partitionSentinel.deallocate(); freeBuckets.deallocate()
    }

    public func didInsert(_ expert: Int32, at access: Int) {
        uses[Int(expert)] = 1
        let first = bucketLinks[Int(partitionSentinel[Int(expert)])].next
        let bucket = bucketUses[Int(first)] == 1 ? first : newBucket(uses: 1, after: partitionSentinel[Int(expert)])
        append(expert, to: bucket)
    }

    public func didAccess(_ expert: Int32, at access: Int) {
        if uses[Int(expert)] < UInt32.max { uses[Int(expert)] += 1 }
        let from = bucketOf[Int(expert)], count = min(uses[Int(expert)], mostUses)
        unlink(expert)
        if count == bucketUses[Int(from)] {  // saturated: only the touch moves it
            append(expert, to: from)
            return
        }
        let next = bucketLinks[Int(from)].next
        append(expert, to: bucketUses[Int(next)] == count ? next : newBucket(uses: count, after: from))
        freeIfEmpty(from)
    }

    public func didEvict(_ expert: Int32) {
        let from = bucketOf[Int(expert)]
        guard from >= 0 else { return }  // not resident: nothing to forget
        unlink(expert)
        freeIfEmpty(from)
        uses[Int(expert)] = 0
        bucketOf[Int(expert)] = -1
    }

    public func victim(in partition: Int, pinned: PinSet) -> Int32? {
        let sentinel = Int32(slots + partition)
        var bucket = bucketLinks[Int(sentinel)].next
        while bucket != sentinel {
            let end = Int32(experts) + bucket
            var candidate = expertLinks[Int(end)].next
            while candidate != end {
                if !pinned.contains(candidate) { return candidate }
                candidate = expertLinks[Int(candidate)].next
            }
            bucket = bucketLinks[Int(bucket)].next
        }
        return nil
    }

    // MARK: Lists

    /// Puts `e` at the end of `bucket` (its most recent touch).
    @inline(__always) private func append(_ e: Int32, to bucket: Int32) {
        let end = Int32(experts) + bucket, last = expertLinks[Int(end)].previous
        expertLinks[Int(e)] = Links(previous: last, next: end)
        expertLinks[Int(last)].next = e
        expertLinks[Int(end)].previous = e
        bucketOf[Int(e)] = bucket
    }

    @inline(__always) private func unlink(_ e: Int32) {
        let around = expertLinks[Int(e)]
        expertLinks[Int(around.previous)].next = around.next
        expertLinks[Int(around.next)].previous = around.previous
    }

    /// A bucket for `count` uses, linked after bucket (or sentinel) `before`.
    @inline(__always) private func newBucket(uses count: UInt32, after before: Int32) -> Int32 {
        let b = freeBuckets[freeBuckets.count - 1]
        freeBuckets.removeLast()
        bucketUses[Int(b)] = count
        let end = Int32(experts) + b
        expertLinks[Int(end)] = Links(previous: end, next: end)  // no experts yet
        let after = bucketLinks[Int(before)].next
        bucketLinks[Int(b)] = Links(previous: before, next: after)
        bucketLinks[Int(before)].next = b
        bucketLinks[Int(after)].previous = b
        return b
    }

    /// Unlinks and frees `bucket` once its last expert has left.
    @inline(__always) private func freeIfEmpty(_ bucket: Int32) {
        let end = Int32(experts) + bucket
        guard expertLinks[Int(end)].next == end else { return }
        let around = bucketLinks[Int(bucket)]
        bucketLinks[Int(around.previous)].next = around.next
        bucketLinks[Int(around.next)].previous = around.previous
        freeBuckets.append(bucket)
    }
}
