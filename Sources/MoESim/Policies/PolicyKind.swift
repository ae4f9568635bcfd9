/// Every strategy by its CLI and report name. Adding a strategy is one file plus one case here.
public enum PolicyKind: String, CaseIterable, Sendable, Codable {
    case onDemand = "on-demand"
    case lru
    case fifo
    case belady
    case allResident = "all-resident"
    case prefetchAll = "prefetch-all"
    case pregated
    case crossLayerGate = "cross-layer-gate"
    case affinity
    case oraclePrefetch = "oracle-prefetch"

    /// One line for `--help` and reports.
    public var summary: String {
        switch self {
        case .onDemand: "no cache across layers; load on the gate, compute after all copies land (MoE-OnDemand)"
        case .lru: "cache with least-recently-used eviction, demand loads only (mixtral-offloading)"
        case .fifo: "cache with first-in-first-out eviction, demand loads only"
        case .belady: "optimal offline eviction: evict the expert used farthest in the future (Belady 1966)"
        case .allResident: "every expert on the GPU: the compute-only lower bound"
        case .prefetchAll: "LRU cache + copy every expert of layer l+1 during layer l (MoE-Prefetch)"
        case .pregated: "LRU cache + exact prefetch of layer l+1's experts at layer l's gate (Pre-gated MoE)"
        case .crossLayerGate: "LRU cache + prefetch of layer l+1's experts predicted from layer l's input (Fate)"
        case .affinity: "LRU cache + prefetch by online layer-to-layer co-activation counts (ExFlow / MoE-Infinity)"
        case .oraclePrefetch: "LRU cache + perfect prefetch of the next `lookahead` layers: the bound for prediction"
        }
    }

    /// Whether the policy keeps a cache that `cache_scope` can split per layer.
    public var supportsPerLayerScope: Bool {
        switch self {
        case .onDemand, .belady, .allResident: false
        default: true
        }
    }

    /// Whether the strategy prefetches, so that `lookahead` (and for `cross-layer-gate`, the accuracy) apply.
    public var prefetches: Bool {
        switch self {
        case .prefetchAll, .pregated, .crossLayerGate, .affinity, .oraclePrefetch: true
        default: false
        }
    }

    /// Whether `lookahead` changes what the strategy does.
    public var usesLookahead: Bool { self == .oraclePrefetch }

    /// Parses a name, suggesting the closest one.
    public static func named(_ name: String) throws -> PolicyKind {
        guard let kind = PolicyKind(rawValue: name) else {
            throw ConfigError.unknownPreset(kind: "policy", name: name, known: allCases.map(\.rawValue))
        }
        return kind
    }
}

/// Settings of the prefetching strategies.
public struct PrefetchOptions: Sendable, Equatable {
    /// Layers ahead that `oracle-prefetch` sees (the others look one layer ahead).
    public var lookahead = 1
    /// Per-expert accuracy of the modelled `cross-layer-gate` predictor (Fate reports about 97%).
    public var accuracy = 0.97
    /// Seed of the modelled predictor.
    public var seed: UInt64 = 1

    public init(lookahead: Int = 1, accuracy: Double = 0.97, seed: UInt64 = 1) {
        self.lookahead = lookahead; self.accuracy = accuracy; self.seed = seed
    }

    public func validate() throws {
        if lookahead < 1 { throw ConfigError.invalidValue(field: "lookahead", value: "\(lookahead)", expected: "1 or more") }
        if !(accuracy >= 0 && accuracy <= 1) {
            throw ConfigError.invalidValue(field: "accuracy", value: "\(accuracy)", expected: "a probability in [0, 1]")
        }
    }
}

/// Whether one cache spans all layers or each layer gets `budget / layers` of its own.
public enum CacheScope: String, CaseIterable, Sendable, Codable {
    case global
    case perLayer = "per-layer"
}
