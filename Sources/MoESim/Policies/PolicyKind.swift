/// Every strategy by its CLI and report name. Adding a strategy is one file plus one case here.
public enum PolicyKind: String, CaseIterable, Sendable, Codable {
    case onDemand = "on-demand"
    case lru
    case fifo
    case belady
    case allResident = "all-resident"

    /// One line for `--help` and reports.
    public var summary: String {
        switch self {
        case .onDemand: "no cache across layers; load on the gate, compute after all copies land (MoE-OnDemand)"
        case .lru: "cache with least-recently-used eviction, demand loads only (mixtral-offloading)"
        case .fifo: "cache with first-in-first-out eviction, demand loads only"
        case .belady: "optimal offline eviction: evict the expert used farthest in the future (Belady 1966)"
        case .allResident: "every expert on the GPU: the compute-only lower bound"
        }
    }

    /// Whether the policy keeps a cache that `cache_scope` can split per layer.
    public var supportsPerLayerScope: Bool { self == .lru || self == .fifo }

    /// Parses a name, suggesting the closest one.
    public static func named(_ name: String) throws -> PolicyKind {
        guard let kind = PolicyKind(rawValue: name) else {
            throw ConfigError.unknownPreset(kind: "policy", name: name, known: allCases.map(\.rawValue))
        }
        return kind
    }
}

/// Whether one cache spans all layers or each layer gets `budget / layers` of its own.
public enum CacheScope: String, CaseIterable, Sendable, Codable {
    case global
    case perLayer = "per-layer"
}
