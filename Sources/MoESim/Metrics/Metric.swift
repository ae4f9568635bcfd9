/// Every column of the replay report, in order; the raw value is the CSV header. Defined in docs/metrics.md.
public enum Metric: String, CaseIterable, Comparable, Sendable {
    case trace, model, hardware, policy
    case cacheScope = "cache_scope"
    case eviction
    case lookahead
    case predAccuracy = "pred_accuracy"
    case prefetchBuffer = "prefetch_buffer"
    case precisionThreshold = "precision_threshold"
    case lowBits = "low_bits"
    case budgetBytes = "budget_bytes"
    case budgetExperts = "budget_experts"
    case tokens, steps, accesses, hits, misses
    case hitRate = "hit_rate"
    case bytesH2D = "bytes_h2d"
    case prefetchIssued = "prefetch_issued"
    case prefetchUseful = "prefetch_useful"
    case prefetchLate = "prefetch_late"
    case prefetchWasted = "prefetch_wasted"
    case prefetchCancelled = "prefetch_cancelled"
    case bytesPrefetch = "bytes_prefetch"
    case bytesWasted = "bytes_wasted"
    case predPrecision = "pred_precision"
    case predRecall = "pred_recall"
    case predictorSource = "predictor_source"
    case simSeconds = "sim_seconds"
    case tokensPerSecond = "tokens_per_s"
    case ttftSeconds = "ttft_s"
    case tpotMeanSeconds = "tpot_mean_s"
    case tpotP50Seconds = "tpot_p50_s"
    case tpotP99Seconds = "tpot_p99_s"
    case stallSeconds = "stall_seconds"
    case linkBusyFraction = "link_busy_fraction"
    case peakExpertBytes = "peak_expert_bytes"
    case lowPrecisionShare = "low_precision_share"
    case bytesSaved = "bytes_saved"
    case cpuExperts = "cpu_experts"
    case cpuSeconds = "cpu_seconds"
    case outputRelErrorMean = "output_rel_error_mean"
    case outputRelErrorP99 = "output_rel_error_p99"
    case outputCosineMin = "output_cosine_min"
    case missingCells = "missing_cells"
    case scheduler, batch
    case maxTokens = "max_tokens"
    case prefillChunk = "prefill_chunk"
    case arrival
    case arrivalRate = "arrival_rate"
    case requests
    case requestsPerSecond = "requests_per_s"
    case outputTokensPerSecond = "output_tokens_per_s"
    case meanBatch = "mean_batch"
    case distinctExpertsPerLayer = "distinct_experts_per_layer"
    case queueMeanSeconds = "queue_mean_s"
    case requestTTFTP50 = "request_ttft_p50_s"
    case requestTTFTP90 = "request_ttft_p90_s"
    case requestTTFTP99 = "request_ttft_p99_s"
    case requestTPOTP50 = "request_tpot_p50_s"
    case requestTPOTP90 = "request_tpot_p90_s"
    case requestTPOTP99 = "request_tpot_p99_s"
    case requestE2EP50 = "request_e2e_p50_s"
    case requestE2EP90 = "request_e2e_p90_s"
    case requestE2EP99 = "request_e2e_p99_s"
    case sloTTFT = "slo_ttft_s"
    case sloTPOT = "slo_tpot_s"
    case goodput = "goodput_rps"
    case peakKVBytes = "peak_kv_bytes"
    case skipThreshold = "skip_threshold"
    case skippedExperts = "skipped_experts"
    case runtime
    case cpuLayers = "cpu_layers"
    case placementRest = "placement_rest"
    case trainSplit = "train_split"
    case trainTokens = "train_tokens"
    case trainHitRate = "train_hit_rate"
    case trainTokensPerSecond = "train_tokens_per_s"
    // Three tiers (docs/tiers.md): only in reports with an SSD tier (`ColumnGroups.tiers`).
    case hostCapacityBytes = "host_capacity_bytes"
    case hostEviction = "host_eviction"
    case hostHits = "host_hits"
    case hostMisses = "host_misses"
    case hostLate = "host_late"
    case hostHitRate = "host_hit_rate"
    case hostEvictions = "host_evictions"
    case peakHostBytes = "peak_host_bytes"
    case ssdReads = "ssd_reads"
    case ssdPrefetchReads = "ssd_prefetch_reads"
    case ssdBypassReads = "ssd_bypass_reads"
    case bytesSSD = "bytes_ssd"
    case ssdBusyFraction = "ssd_busy_fraction"
    // Prefetch admission (docs/policies.md, "Admission"): only in reports with a run that sets it.
    case prefetchAdmission = "prefetch_admission"
    case prefetchRefused = "prefetch_refused"
    // Several GPUs (docs/multigpu.md): only in reports with a run on more than one GPU.
    case gpus
    case expertMap = "expert_map"
    case loadImbalanceMean = "load_imbalance_mean"
    case loadImbalanceP99 = "load_imbalance_p99"
    case allToAllBytes = "all_to_all_bytes"
    case crossGPUShare = "cross_gpu_share"
    case gpuHitRateMin = "gpu_hit_rate_min"
    case gpuHitRateMax = "gpu_hit_rate_max"
    case gpuStallMaxSeconds = "gpu_stall_max_s"
    case mapObjective = "map_objective"
    case mapObjectiveBound = "map_objective_bound"

    /// The group the column belongs to: the tiers below the GPU, prefetch admission, or none (every report). A
    /// report whose runs use neither leaves those columns out, so it keeps the bytes it had before they existed.
    public var group: ColumnGroups {
        if self >= .gpus { return .gpus }
        if self >= .prefetchAdmission { return .admission }
        return self >= .hostCapacityBytes ? .tiers : []
    }

    /// The report's columns: every column not in a group, and those of `groups`.
    public static func columns(_ groups: ColumnGroups) -> [Metric] { allCases.filter { groups.isSuperset(of: $0.group) } }
    public static func header(_ groups: ColumnGroups) -> [String] { columns(groups).map(\.rawValue) }
    /// The header of a report whose runs use no group (two tiers, no admission).
    public static var header: [String] { header([]) }

    public static func < (a: Metric, b: Metric) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }

    /// What a column holds, and so which values it may take (a property test holds every row to it).
    public enum Kind: Sendable {
        /// A name or label.
        case text
        /// A whole number of things, ≥ 0.
        case count
        /// Bytes, a whole number ≥ 0.
        case bytes
        /// Simulated seconds, finite and ≥ 0.
        case seconds
        /// A rate per simulated second, finite and ≥ 0.
        case perSecond
        /// A share, in [0, 1].
        case fraction
        /// A finite value ≥ 0 with no upper bound (a mean, a relative error, a gate-weight threshold).
        case ratio
        /// A cosine similarity, in [-1, 1].
        case cosine
    }

    public var kind: Kind {
        switch self {
        case .trace, .model, .hardware, .policy, .cacheScope, .eviction, .predictorSource, .scheduler, .arrival, .runtime,
             .placementRest, .hostEviction, .prefetchAdmission, .expertMap:
            .text
        case .lookahead, .lowBits, .budgetExperts, .tokens, .steps, .accesses, .hits, .misses, .prefetchIssued,
             .prefetchUseful, .prefetchLate, .prefetchWasted, .prefetchCancelled, .cpuExperts, .missingCells, .batch,
             .maxTokens, .prefillChunk, .requests, .skippedExperts, .cpuLayers, .trainTokens, .hostHits, .hostMisses,
             .hostLate, .hostEvictions, .ssdReads, .ssdPrefetchReads, .ssdBypassReads, .prefetchRefused, .gpus, .mapObjective, .mapObjectiveBound:
            .count
        case .budgetBytes, .bytesH2D, .bytesPrefetch, .bytesWasted, .peakExpertBytes, .bytesSaved, .peakKVBytes,
             .hostCapacityBytes, .peakHostBytes, .bytesSSD, .allToAllBytes:
            .bytes
        case .simSeconds, .ttftSeconds, .tpotMeanSeconds, .tpotP50Seconds, .tpotP99Seconds, .stallSeconds, .cpuSeconds,
             .queueMeanSeconds, .requestTTFTP50, .requestTTFTP90, .requestTTFTP99, .requestTPOTP50, .requestTPOTP90,
             .requestTPOTP99, .requestE2EP50, .requestE2EP90, .requestE2EP99, .sloTTFT, .sloTPOT, .gpuStallMaxSeconds:
            .seconds
        case .tokensPerSecond, .arrivalRate, .requestsPerSecond, .outputTokensPerSecond, .goodput, .trainTokensPerSecond:
            .perSecond
        case .predAccuracy, .prefetchBuffer, .hitRate, .predPrecision, .predRecall, .linkBusyFraction,
             .lowPrecisionShare, .trainSplit, .trainHitRate, .hostHitRate, .ssdBusyFraction, .crossGPUShare, .gpuHitRateMin,
             .gpuHitRateMax:
            .fraction
        case .precisionThreshold, .skipThreshold, .meanBatch, .distinctExpertsPerLayer, .outputRelErrorMean,
             .outputRelErrorP99, .loadImbalanceMean, .loadImbalanceP99:
            .ratio
        case .outputCosineMin:
            .cosine
        }
    }

    /// The cell for `result`; undefined values (no decode step, zero time) are empty, which pandas reads as NaN.
    public func cell(_ r: ReplayResult) -> String {
        switch self {
        case .trace: r.traceName
        case .model: r.spec.model.name
        case .hardware: r.spec.hardware.name
        case .runtime: r.spec.runtime.name
        case .cpuLayers: r.spec.policy == .nCpuMoe ? "\(r.spec.placement.cpuLayers(model: r.spec.model, budgetBytes: r.budgetBytes))" : ""
        case .placementRest: r.spec.policy.placesStatically ? r.spec.placement.rest.rawValue : ""
        case .trainSplit: r.trainPart.map { format($0.share) } ?? ""
        case .trainTokens: r.trainPart.map { "\($0.tokens)" } ?? ""
        case .trainHitRate: format(r.trainPart?.hitRate)
        case .trainTokensPerSecond: format(r.trainPart?.tokensPerSecond)
        case .policy: r.spec.policy.rawValue
        case .cacheScope: r.spec.policy.supportsPerLayerScope ? r.spec.scope.rawValue : "none"
        case .eviction: r.spec.policy.eviction(r.spec.prefetch)
        case .prefetchBuffer: r.spec.policy.prefetches ? format(r.spec.prefetch.bufferShare) : ""
        case .lookahead: r.spec.policy.prefetches ? "\(r.spec.policy.usesLookahead ? r.spec.prefetch.lookahead : 1)" : ""
        case .predAccuracy: r.counters.predictorSource == "modelled" ? format(r.spec.prefetch.accuracy) : ""
        case .precisionThreshold: r.spec.policy.copiesLowPrecision ? format(r.spec.precision.threshold) : ""
        case .lowBits: r.spec.policy.copiesLowPrecision ? "\(r.spec.precision.lowBits)" : ""
        case .budgetBytes: "\(r.budgetBytes)"
        case .budgetExperts: "\(r.budgetExperts)"
        case .tokens: "\(r.tokens)"
        case .steps: "\(r.steps)"
        case .accesses: "\(r.counters.accesses)"
        case .hits: "\(r.counters.hits)"
        case .misses: "\(r.counters.misses)"
        case .hitRate: format(r.hitRate)
        case .bytesH2D: "\(r.counters.bytesH2D)"
        case .prefetchIssued: "\(r.counters.prefetch.issued)"
        case .prefetchUseful: "\(r.counters.prefetch.useful)"
        case .prefetchLate: "\(r.counters.prefetch.late)"
        case .prefetchWasted: "\(r.counters.prefetch.wasted)"
        case .prefetchCancelled: "\(r.counters.prefetch.cancelled)"
        case .bytesPrefetch: "\(r.counters.prefetch.bytesPrefetch)"
        case .bytesWasted: "\(r.counters.prefetch.bytesWasted)"
        case .predPrecision: format(r.predPrecision)
        case .predRecall: format(r.predRecall)
        case .predictorSource: r.counters.predictorSource
        case .simSeconds: format(r.simSeconds)
        case .tokensPerSecond: format(r.tokensPerSecond)
        case .ttftSeconds: format(r.ttftSeconds)
        case .tpotMeanSeconds: format(r.tpotMeanSeconds)
        case .tpotP50Seconds: format(r.tpotP50Seconds)
        case .tpotP99Seconds: format(r.tpotP99Seconds)
        case .stallSeconds: format(r.stallSeconds)
        case .linkBusyFraction: format(r.linkBusyFraction)
        case .peakExpertBytes: "\(r.counters.peakExpertBytes)"
        case .lowPrecisionShare: format(r.lowPrecisionShare)
        case .bytesSaved: "\(r.counters.bytesSaved)"
        case .cpuExperts: "\(r.counters.cpuExperts)"
        case .cpuSeconds: format(r.cpuSeconds)
        case .outputRelErrorMean: format(r.numerics?.relErrorMean)
        case .outputRelErrorP99: format(r.numerics?.relErrorP99)
        case .outputCosineMin: format(r.numerics?.cosineMin)
        case .missingCells: "\(r.missingCells)"
        case .scheduler: r.spec.serving.scheduler.rawValue
        case .batch: "\(r.spec.serving.batchLimit)"
        case .maxTokens: r.spec.serving.scheduler == .continuous ? "\(r.spec.serving.maxTokens)" : ""
        case .prefillChunk: r.spec.serving.scheduler == .continuous ? "\(r.spec.serving.prefillChunk)" : ""
        case .arrival: r.serving == nil ? "" : r.spec.serving.arrivals.label
        case .arrivalRate: r.serving == nil ? "" : format(r.spec.serving.arrivals.rate)
        case .requests: r.serving.map { "\($0.requests)" } ?? ""
        case .requestsPerSecond: format(r.serving?.requestsPerSecond)
        case .outputTokensPerSecond: format(r.serving?.outputTokensPerSecond)
        case .meanBatch: format(r.meanBatch)
        case .distinctExpertsPerLayer: format(r.distinctExpertsPerLayer)
        case .queueMeanSeconds: format(r.serving?.queueMeanSeconds)
        case .requestTTFTP50: format(r.serving?.ttft.p50)
        case .requestTTFTP90: format(r.serving?.ttft.p90)
        case .requestTTFTP99: format(r.serving?.ttft.p99)
        case .requestTPOTP50: format(r.serving?.tpot.p50)
        case .requestTPOTP90: format(r.serving?.tpot.p90)
        case .requestTPOTP99: format(r.serving?.tpot.p99)
        case .requestE2EP50: format(r.serving?.endToEnd.p50)
        case .requestE2EP90: format(r.serving?.endToEnd.p90)
        case .requestE2EP99: format(r.serving?.endToEnd.p99)
        case .sloTTFT: format(r.serving == nil ? nil : r.spec.serving.slo?.ttftSeconds)
        case .sloTPOT: format(r.serving == nil ? nil : r.spec.serving.slo?.tpotSeconds)
        case .goodput: format(r.serving?.goodput)
        case .peakKVBytes: "\(r.peakKVBytes)"
        case .skipThreshold: r.spec.policy.skips ? format(r.spec.precision.skipThreshold) : ""
        case .skippedExperts: "\(r.counters.skippedExperts)"
        case .hostCapacityBytes: r.counters.tiers.map { "\($0.capacityBytes)" } ?? ""
        case .hostEviction: r.counters.tiers == nil ? "" : r.spec.hardware.tiers.hostEviction.rawValue
        case .hostHits: r.counters.tiers.map { "\($0.hits)" } ?? ""
        case .hostMisses: r.counters.tiers.map { "\($0.misses)" } ?? ""
        case .hostLate: r.counters.tiers.map { "\($0.late)" } ?? ""
        case .hostHitRate: format(r.hostHitRate)
        case .hostEvictions: r.counters.tiers.map { "\($0.evictions)" } ?? ""
        case .peakHostBytes: r.counters.tiers.map { "\($0.peakBytes)" } ?? ""
        case .ssdReads: r.counters.tiers.map { "\($0.reads)" } ?? ""
        case .ssdPrefetchReads: r.counters.tiers.map { "\($0.prefetchReads)" } ?? ""
        case .ssdBypassReads: r.counters.tiers.map { "\($0.bypassReads)" } ?? ""
        case .bytesSSD: r.counters.tiers.map { "\($0.bytesRead)" } ?? ""
        case .ssdBusyFraction: format(r.ssdBusyFraction)
        case .prefetchAdmission: r.spec.policy.prefetches ? r.spec.prefetch.admission.rawValue : ""
        case .prefetchRefused: r.spec.policy.prefetches ? "\(r.counters.prefetch.refused)" : ""
        case .gpus: "\(r.spec.hardware.gpus)"
        case .expertMap: r.multiGPU?.map ?? ""
        case .loadImbalanceMean: format(r.multiGPU?.imbalanceMean)
        case .loadImbalanceP99: format(r.multiGPU?.imbalanceP99)
        case .allToAllBytes: r.multiGPU.map { "\($0.allToAllBytes)" } ?? ""
        case .crossGPUShare: format(r.multiGPU?.crossShare)
        case .gpuHitRateMin: format(r.multiGPU?.hitRateMin)
        case .gpuHitRateMax: format(r.multiGPU?.hitRateMax)
        case .gpuStallMaxSeconds: format(r.multiGPU?.stallMaxSeconds)
        case .mapObjective: r.multiGPU.map { "\($0.objective.value)" } ?? ""
        case .mapObjectiveBound: r.multiGPU.map { "\($0.objective.lowerBound)" } ?? ""
        }
    }

    /// A report row of `r` with the columns of `groups` (empty where `r` does not use a group).
    public static func row(_ r: ReplayResult, _ groups: ColumnGroups) -> [String] { columns(groups).map { $0.cell(r) } }
    /// A row for a report of `r` alone: the groups it uses.
    public static func row(_ r: ReplayResult) -> [String] { row(r, r.columnGroups) }
}

/// Groups of report columns that only some runs use (`Metric.group`).
public struct ColumnGroups: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Three tiers: an SSD below a host tier of limited size (docs/tiers.md).
    public static let tiers = ColumnGroups(rawValue: 1)
    /// A prefetching strategy with `prefetch.admission` other than `none`.
    public static let admission = ColumnGroups(rawValue: 2)
    /// More than one GPU (docs/multigpu.md).
    public static let gpus = ColumnGroups(rawValue: 4)
    public static let all: ColumnGroups = [.tiers, .admission, .gpus]

    /// The groups a run with `spec` uses.
    public init(_ spec: ReplaySpec) {
        self = []
        if spec.hardware.tiers.hasSSD { insert(.tiers) }
        if spec.policy.prefetches && spec.prefetch.admission != .none { insert(.admission) }
        if spec.hardware.gpus > 1 { insert(.gpus) }
    }
}

/// Shortest round-trip decimal of a Double (stable for equal inputs), empty for nil.
func format(_ value: Double?) -> String {
    guard let value else { return "" }
    return "\(value)"
}
