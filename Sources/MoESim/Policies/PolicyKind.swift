/// Every strategy by its CLI and report name. What each is made of is `assemble` (Strategy/Strategy.swift); adding one
/// is its plug-in files plus a case here, and the compiler points at every switch that must name it
/// (docs/extending.md). No switch over strategies has a `default:`.
public enum PolicyKind: String, CaseIterable, Sendable, Codable {
    case onDemand = "on-demand"
    case lru
    case fifo
    case lfu
    case arc
    case belady
    case allResident = "all-resident"
    case prefetchAll = "prefetch-all"
    case pregated
    case crossLayerGate = "cross-layer-gate"
    case affinity
    case moeInfinity = "moe-infinity"
    case oraclePrefetch = "oracle-prefetch"
    case mixedPrecision = "mixed-precision"
    case cpuFallback = "cpu-fallback"
    case skip
    case mixedSkip = "mixed-skip"
    case staticFrequency = "static-frequency"
    case nCpuMoe = "n-cpu-moe"

    /// One line for `--help` and reports.
    public var summary: String {
        switch self {
        case .onDemand: "no cache across layers; load on the gate, compute after all copies land (MoE-OnDemand)"
        case .lru: "cache with least-recently-used eviction, demand loads only (mixtral-offloading)"
        case .fifo: "cache with first-in-first-out eviction, demand loads only"
        case .lfu: "cache with least-frequently-used eviction (ties: least recent), demand loads only"
        case .arc: "cache with adaptive replacement (ARC: recency and frequency), demand loads only"
        case .belady: "optimal offline eviction: evict the expert used farthest in the future (Belady 1966)"
        case .allResident: "every expert on the GPU: the compute-only lower bound"
        case .prefetchAll: "cache + copy every expert of layer l+1 during layer l (MoE-Prefetch)"
        case .pregated: "cache + exact prefetch of layer l+1's experts at layer l's gate (Pre-gated MoE)"
        case .crossLayerGate: "cache + prefetch of layer l+1's experts predicted from layer l's input (Fate)"
        case .affinity: "cache + prefetch by online layer-to-layer co-activation counts (ExFlow / MoE-Infinity)"
        case .moeInfinity: "cache with in-cache visit counts + prefetch from matched request-level activation matrices (MoE-Infinity)"
        case .oraclePrefetch: "cache + perfect prefetch of the next `lookahead` layers: the bound for prediction"
        case .mixedPrecision: "LRU cache; misses of low-gate-weight experts are copied in int4/int2 (HOBBIT)"
        case .cpuFallback: "popular experts placed on the GPU; a miss runs on the host CPU when that is sooner (Fiddler)"
        case .skip: "LRU cache; misses of low-gate-weight experts are not computed (expert skipping: HOBBIT, AdapMoE)"
        case .mixedSkip: "LRU cache; misses below skip_threshold skipped, below threshold copied in low precision (HOBBIT)"
        case .staticFrequency: "the experts most used in a training part of the trace pinned on the GPU, measured on the rest; misses on demand or on the CPU"
        case .nCpuMoe: "the experts of the first N layers computed on the host CPU, the other layers' on the GPU (llama.cpp --n-cpu-moe)"
        }
    }

    /// Whether the policy keeps a cache that `cache_scope` can split per layer (`on-demand` and `all-resident`
    /// keep none: their `cache_scope` column says `none`).
    public var supportsPerLayerScope: Bool {
        switch self {
        case .onDemand, .allResident: false
        case .lru, .fifo, .lfu, .arc, .belady, .prefetchAll, .pregated, .crossLayerGate, .affinity, .moeInfinity,
             .oraclePrefetch, .mixedPrecision, .cpuFallback, .skip, .mixedSkip, .staticFrequency, .nCpuMoe: true
        }
    }

    /// The eviction rule the strategy's cache uses, for the `eviction` column.
    public func eviction(_ options: PrefetchOptions) -> String {
        switch self {
        case .onDemand, .allResident: "none"
        case .lru, .mixedPrecision, .cpuFallback, .skip, .mixedSkip, .staticFrequency, .nCpuMoe: "lru"
        case .fifo: "fifo"
        case .lfu, .moeInfinity: "lfu"
        case .arc: "arc"
        case .belady: "belady"
        case .prefetchAll, .pregated, .crossLayerGate, .affinity, .oraclePrefetch: options.eviction.rawValue
        }
    }

    /// Whether the strategy prefetches, so that `lookahead` (and for `cross-layer-gate`, the accuracy) apply.
    public var prefetches: Bool {
        switch self {
        case .prefetchAll, .pregated, .crossLayerGate, .affinity, .moeInfinity, .oraclePrefetch: true
        case .onDemand, .lru, .fifo, .lfu, .arc, .belady, .allResident, .mixedPrecision, .cpuFallback, .skip,
             .mixedSkip, .staticFrequency, .nCpuMoe: false
        }
    }

    /// Whether the strategy reads steps that have not started (an oracle): a serving run then fixes the step order
    /// by a first pass under `lru`, since a batching scheduler decides each step only when the one before ends.
    public var readsFutureSteps: Bool {
        switch self {
        case .belady, .oraclePrefetch: true
        case .onDemand, .lru, .fifo, .lfu, .arc, .allResident, .prefetchAll, .pregated, .crossLayerGate, .affinity,
             .moeInfinity, .mixedPrecision, .cpuFallback, .skip, .mixedSkip, .staticFrequency, .nCpuMoe: false
        }
    }

    /// Whether the strategy reads the gate weights of a step's experts (a served run compiles them only then).
    public var readsGateWeights: Bool {
        switch self {
        case .mixedPrecision, .skip, .mixedSkip: true
        case .onDemand, .lru, .fifo, .lfu, .arc, .belady, .allResident, .prefetchAll, .pregated, .crossLayerGate,
             .affinity, .moeInfinity, .oraclePrefetch, .cpuFallback, .staticFrequency, .nCpuMoe: false
        }
    }

    /// Whether misses may be copied in low precision (`precision.threshold`, `low_bits` apply), and whether they may
    /// be skipped (`precision.skip_threshold` applies).
    public var copiesLowPrecision: Bool { self == .mixedPrecision || self == .mixedSkip }
    public var skips: Bool { self == .skip || self == .mixedSkip }

    /// Whether the strategy learns its placement from a training part of the trace and is measured on the rest.
    public var learnsPlacement: Bool { self == .staticFrequency }
    /// Whether `placement.rest` applies (what a miss of an expert not placed becomes).
    public var placesStatically: Bool { self == .staticFrequency || self == .nCpuMoe }

    /// Whether `prefetch.eviction` picks the cache's eviction rule: the prefetching strategies whose papers keep a
    /// plain cache (MoE-Infinity has its own).
    public var takesEvictionOption: Bool { prefetches && self != .moeInfinity }

    /// Whether `lookahead` changes what the strategy does.
    public var usesLookahead: Bool { self == .oraclePrefetch }
    /// Whether the strategy's predictor is modelled when the trace records none (`accuracy`, `seed` apply).
    public var modelsPredictor: Bool { self == .crossLayerGate }
    /// Whether whole layers' experts run on the host CPU (`placement.cpu_layers` applies).
    public var placesLayersOnHost: Bool { self == .nCpuMoe }

    /// Whether the strategy runs a predictor of its own each layer (a pre-gate, a cross-layer gate, co-activation
    /// counts), whose cost the runtime's `predictor_s` charges; an oracle and prefetch-all run none.
    public var runsPredictor: Bool {
        switch self {
        case .pregated, .crossLayerGate, .affinity, .moeInfinity: true
        case .onDemand, .lru, .fifo, .lfu, .arc, .belady, .allResident, .prefetchAll, .oraclePrefetch, .mixedPrecision,
             .cpuFallback, .skip, .mixedSkip, .staticFrequency, .nCpuMoe: false
        }
    }

    /// Parses a name, suggesting the closest one.
    public static func named(_ name: String) throws -> PolicyKind {
        guard let kind = PolicyKind(rawValue: name) else {
            throw ConfigError.unknownPreset(kind: "policy", name: name, known: allCases.map(\.rawValue))
        }
        return kind
    }
}

/// The eviction rule of the prefetching strategies' cache (`lru` by default; Fate uses ARC).
public enum CacheEviction: String, CaseIterable, Sendable, Codable {
    case lru
    case arc
}

/// Settings of the prefetching strategies.
public struct PrefetchOptions: OptionSection {
    public static let section = "prefetch"
    /// Layers ahead that `oracle-prefetch` sees (the others look one layer ahead).
    public var lookahead = 1
    /// Per-expert accuracy of the modelled `cross-layer-gate` predictor (Fate reports about 97%).
    public var accuracy = 0.97
    /// Seed of the modelled predictor.
    public var seed: UInt64 = 1
    /// The most of the budget that prefetched experts not yet used may hold (1 = no limit): the rest is the cache's.
    public var bufferShare = 1.0
    /// The cache's eviction rule.
    public var eviction = CacheEviction.lru
    /// Which proposals are left unissued (`PrefetchAdmission`; `none`: every one the room and buffer allow).
    public var admission = PrefetchAdmission.none

    public init() {}

    public init(lookahead: Int = 1, accuracy: Double = 0.97, seed: UInt64 = 1, bufferShare: Double = 1,
                eviction: CacheEviction = .lru) {
        self.lookahead = lookahead; self.accuracy = accuracy; self.seed = seed
        self.bufferShare = bufferShare; self.eviction = eviction
    }

    /// The option names, as config files and sweep axes (`prefetch.NAME`) write them.
    public static let keys = ["lookahead", "accuracy", "seed", "buffer", "eviction", "admission"]

    public mutating func set(_ key: String, to text: String, origin: String) throws {
        switch key {
        case "lookahead": lookahead = try Self.integer(key, text, in: Limits.lookahead)
        case "accuracy": accuracy = try Self.number(key, text, in: Limits.accuracy)
        case "seed":
            guard let v = UInt64(text.trimmingCharacters(in: .whitespaces)) else {
                throw ConfigError.invalidValue(field: "prefetch.seed", value: text, expected: "a non-negative integer")
            }
            seed = v
        case "buffer": bufferShare = try Self.number(key, text, in: Limits.prefetchBuffer)
        case "eviction":
            guard let v = CacheEviction(rawValue: text) else {
                throw ConfigError.invalidValue(field: "prefetch.eviction", value: text, expected: "lru or arc")
            }
            eviction = v
        case "admission":
            guard let v = PrefetchAdmission(rawValue: text) else {
                throw ConfigError.invalidValue(field: "prefetch.admission", value: text,
                                               expected: PrefetchAdmission.allCases.map(\.rawValue).joined(separator: ", "))
            }
            admission = v
        default: throw Self.unknown(key, origin: origin)
        }
    }

    public func validate() throws {
        try Limits.check(lookahead, in: Limits.lookahead, "prefetch.lookahead")
        try Limits.check(accuracy, in: Limits.accuracy, "prefetch.accuracy")
        if !(bufferShare > 0 && bufferShare <= 1) {
            throw ConfigError.invalidValue(field: "prefetch.buffer", value: "\(bufferShare)", expected: "a share in (0, 1]")
        }
    }
}

/// How the budget is split: one cache for all layers, an equal share per layer, or per-layer shares that favour
/// shallow layers (Fate): each layer first gets room for its largest working set, the rest goes to layer l in
/// proportion to L − l.
public enum CacheScope: String, CaseIterable, Sendable, Codable {
    case global
    case perLayer = "per-layer"
    case shallowFavoring = "shallow-favoring"
}
