/// The host tier's cache rule (`hardware.host_eviction`, docs/tiers.md): one of the registry's caches that rank by
/// what they have seen. Belady is not offered: the host tier's future is the GPU cache's misses, which the replay
/// knows only as it goes.
public enum HostEviction: String, CaseIterable, Sendable {
    case lru, fifo, lfu, arc

    /// The rule over `cache` (one partition: host memory is one pool of experts).
    func policy(_ cache: CacheShape) -> any CachePolicy {
        switch self {
        case .lru: LRUPolicy(cache: cache)
        case .fifo: LRUPolicy(cache: cache, touchesOnAccess: false)
        case .lfu: LFUPolicy(cache: cache)
        case .arc: ARCPolicy(cache: cache)
        }
    }
}
