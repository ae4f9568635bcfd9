/// Where each setting applies: to which strategies (read from their facts, `PolicyKind`) and under which schedulers.
/// A setting given, on the command line or in a config, where none of the run's strategies or schedulers takes it is
/// refused, naming the setting and what takes it (a user who types `--threshold 0` for `skip` would otherwise get
/// skip's own threshold, 0.1, silently).
///
///     try SettingScope.check([("precision.threshold", "--threshold")], policies: [.skip], schedulers: [.sequential])
///     // --threshold applies to mixed-precision, mixed-skip; this run's strategy is skip: leave it out, …
public enum SettingScope {
    /// Whether setting `key` ("section.field") is taken by `policy`, and by `scheduler`.
    static func takes(_ key: String, _ policy: PolicyKind) -> Bool {
        switch key {
        case "precision.threshold", "precision.low_bits", "precision.group_size", "precision.low_hit": policy.copiesLowPrecision
        case "precision.skip_threshold": policy.skips
        case "prefetch.lookahead": policy.usesLookahead
        case "prefetch.accuracy", "prefetch.seed": policy.modelsPredictor
        case "prefetch.eviction": policy.takesEvictionOption
        case "prefetch.buffer", "prefetch.admission": policy.prefetches
        case "placement.train_split": policy.learnsPlacement
        case "placement.cpu_layers": policy.placesLayersOnHost
        case "placement.rest": policy.placesStatically
        default: true
        }
    }

    static func takes(_ key: String, _ scheduler: ServingOptions.Scheduler) -> Bool {
        switch key {
        case "serving.batch": scheduler == .static
        case "serving.max_seqs", "serving.max_tokens", "serving.prefill_chunk": scheduler == .continuous
        case "serving.arrivals", "serving.slo_ttft_s", "serving.slo_tpot_s": scheduler != .sequential
        default: true
        }
    }

    /// - Parameters:
    ///   - given: the settings given, each as its key and as the user named it (`--threshold`, `precision.threshold`
    ///     at line 4).
    ///   - policies, schedulers, gpus: what the run (or, for a sweep, any of its cells) uses.
    /// - Throws: `ConfigError.invalidValue` for the first setting that no strategy or no scheduler of the run takes.
    public static func check(_ given: [(key: String, named: String)], policies: [PolicyKind],
                             schedulers: [ServingOptions.Scheduler], gpus: [Int] = [1]) throws {
        for (key, named) in given {
            if key.hasPrefix("placement."), ["expert_map", "redundant_experts", "token_location"].contains(key.dropFirst(10)),
               !gpus.contains(where: { $0 > 1 }) {
                throw ConfigError.doesNotApply(setting: named, takers: "several GPUs (hardware.gpus above 1)",
                                               run: "this run has one GPU")
            }
            if !policies.contains(where: { takes(key, $0) }) {
                let takers = PolicyKind.allCases.filter { takes(key, $0) }.map(\.rawValue).joined(separator: ", ")
                throw ConfigError.doesNotApply(setting: named, takers: takers,
                                               run: "this run's \(policies.count == 1 ? "strategy is" : "strategies are") \(policies.map(\.rawValue).joined(separator: ", "))")
            }
            if !schedulers.contains(where: { takes(key, $0) }) {
                let takers = ServingOptions.Scheduler.allCases.filter { takes(key, $0) }.map(\.rawValue).joined(separator: " or ")
                throw ConfigError.doesNotApply(setting: named, takers: "the \(takers) scheduler",
                                               run: "this run's scheduler is \(schedulers.map(\.rawValue).joined(separator: ", "))")
            }
        }
    }
}
