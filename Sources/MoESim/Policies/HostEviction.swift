/// The host tier's cache rule (`hardware.host_eviction`, docs/tiers.md): one of the registry's caches that rank by
/// what they have seen. Belady is not offered: the host tier's future is the GPU cache's misses, which the replay
/// knows only as it goes.
public enum HostEviction: String, CaseIterable, Sendable {
    case lru, fifo, lfu, arc
}

/// A `HostEviction` rule's cache over the host tier's experts: a closed set of the registry's classes, dispatched
/// by its kind. Host memory is asked on every GPU miss: an `any CachePolicy` there (a witness-table call) and a
/// counted reference per call (an enum payload's retain) cost three-tier `lru` a fifth of its speed, so the calls go
/// through unretained views of the rule object, which `owner` holds and whoever holds the cache keeps (a value with
/// no counted reference in it is copied for free).
struct HostCache {
    private enum Kind { case recency, frequency, adaptive }
    private let kind: Kind
    private let recency: Unmanaged<LRUPolicy>?  // lru, and fifo (no touch on access)
    private let frequency: Unmanaged<LFUPolicy>?
    private let adaptive: Unmanaged<ARCPolicy>?

    /// The rule over `cache` (one partition: host memory is one pool of experts); the caller keeps `owner` alive
    /// as long as it uses the cache.
    init(_ rule: HostEviction, _ cache: CacheShape, owner: inout AnyObject?) {
        var lru: LRUPolicy?, lfu: LFUPolicy?, arc: ARCPolicy?
        switch rule {
        case .lru: lru = LRUPolicy(cache: cache); kind = .recency
        case .fifo: lru = LRUPolicy(cache: cache, touchesOnAccess: false); kind = .recency
        case .lfu: lfu = LFUPolicy(cache: cache); kind = .frequency
        case .arc: arc = ARCPolicy(cache: cache); kind = .adaptive
        }
        owner = lru ?? lfu ?? arc
        recency = lru.map { Unmanaged.passUnretained($0) }
        frequency = lfu.map { Unmanaged.passUnretained($0) }
        adaptive = arc.map { Unmanaged.passUnretained($0) }
    }

    @inline(__always) func willInsert(_ e: Int32) {
        if kind == .adaptive { adaptive!._withUnsafeGuaranteedRef { $0.willInsert(e) } }  // the others do nothing
    }

    @inline(__always) func didInsert(_ e: Int32, at access: Int) {
        switch kind {
        case .recency: recency!._withUnsafeGuaranteedRef { $0.didInsert(e, at: access) }
        case .frequency: frequency!._withUnsafeGuaranteedRef { $0.didInsert(e, at: access) }
        case .adaptive: adaptive!._withUnsafeGuaranteedRef { $0.didInsert(e, at: access) }
        }
    }

    @inline(__always) func didAccess(_ e: Int32, at access: Int) {
        switch kind {
        case .recency: recency!._withUnsafeGuaranteedRef { $0.didAccess(e, at: access) }
        case .frequency: frequency!._withUnsafeGuaranteedRef { $0.didAccess(e, at: access) }
        case .adaptive: adaptive!._withUnsafeGuaranteedRef { $0.didAccess(e, at: access) }
        }
    }

    @inline(__always) func didEvict(_ e: Int32) {
        switch kind {
        case .recency: recency!._withUnsafeGuaranteedRef { $0.didEvict(e) }
        case .frequency: frequency!._withUnsafeGuaranteedRef { $0.didEvict(e) }
        case .adaptive: adaptive!._withUnsafeGuaranteedRef { $0.didEvict(e) }
        }
    }

    @inline(__always) func victim(pinned: PinSet) -> Int32? {
        switch kind {
        case .recency: recency!._withUnsafeGuaranteedRef { $0.victim(in: 0, pinned: pinned) }
        case .frequency: frequency!._withUnsafeGuaranteedRef { $0.victim(in: 0, pinned: pinned) }
        case .adaptive: adaptive!._withUnsafeGuaranteedRef { $0.victim(in: 0, pinned: pinned) }
        }
    }
}
