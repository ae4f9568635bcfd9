import Foundation
import ArgumentParser
import MoESim

/// `--set section.field=value`, shared by the commands that take a model, hardware and runtime profile.
struct OverrideOptions: ParsableArguments {
    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Override a profile field, e.g. --set hardware.link_bytes_per_s=16e9, --set model.top_k=4 or --set runtime.host_buffer=pageable (repeatable).",
        valueName: "section.field=value"))
    var overrides: [String] = []

    /// Applies the overrides in order to the profiles.
    func apply(model: inout ModelProfile, hardware: inout HardwareProfile) throws {
        var runtime = RuntimeProfile.ideal
        try apply(model: &model, hardware: &hardware, runtime: &runtime)
    }

    func apply(model: inout ModelProfile, hardware: inout HardwareProfile, runtime: inout RuntimeProfile) throws {
        for item in overrides {
            guard let eq = item.firstIndex(of: "="), let dot = item[..<eq].firstIndex(of: ".") else {
                throw ValidationError("--set expects section.field=value, e.g. hardware.link_bytes_per_s=16e9; got '\(item)'")
            }
            let section = String(item[..<dot]), field = String(item[item.index(after: dot)..<eq])
            let value = String(item[item.index(after: eq)...])
            switch section {
            case ModelProfile.section: try model.set(field, to: value, origin: "--set")
            case HardwareProfile.section: try hardware.set(field, to: value, origin: "--set")
            case RuntimeProfile.section: try runtime.set(field, to: value, origin: "--set")
            default: throw ValidationError("--set: unknown section '\(section)'; use model.FIELD, hardware.FIELD or runtime.FIELD")
            }
        }
        try model.validate()
        try hardware.validate()
        try runtime.validate()
    }
}

/// Human-readable figures for summaries and tables.
enum Human {
    static func percent(_ v: Double?) -> String { v.map { String(format: "%.1f%%", $0 * 100) } ?? "-" }
    static func seconds(_ v: Double?) -> String {
        guard let v else { return "-" }
        if v >= 1 { return String(format: "%.3f s", v) }
        if v >= 1e-3 { return String(format: "%.2f ms", v * 1e3) }
        return String(format: "%.1f µs", v * 1e6)
    }
    static func rate(_ v: Double?) -> String { v.map { String(format: "%.2f", $0) } ?? "-" }
}

/// Command-line options of one options section: each given option is applied by the section's own `set`, as the
/// same key in a config is, so that both read the same text the same way and check the same range (`Limits`).
protocol SectionArguments {
    associatedtype Section: OptionSection
    /// Each option's key in the section, its flag, and its text when given.
    var settings: [(key: String, flag: String, value: String?)] { get }
}

extension SectionArguments {
    /// The settings given, as `section.key` and as typed (`SettingScope`).
    var given: [(key: String, named: String)] {
        settings.compactMap { $0.value == nil ? nil : (Section.section + "." + $0.key, $0.flag) }
    }

    /// `base` (from a config file, or the defaults) with the options given on the command line, checked.
    func options(base: Section) throws -> Section {
        var o = base
        for (key, flag, value) in settings {
            guard let value else { continue }
            do { try o.set(key, to: value, origin: flag) } catch let e as ConfigError {
                throw ValidationError("\(flag): \(e.description)")
            }
        }
        try o.validate()
        return o
    }
}

/// `--lookahead`, `--accuracy`, `--seed`, `--eviction`, `--buffer`, `--admission`: settings of the prefetching
/// strategies.
struct PrefetchArguments: ParsableArguments, SectionArguments {
    typealias Section = PrefetchOptions
    @Option(help: "Layers ahead that oracle-prefetch sees (default 1).")
    var lookahead: String?

    @Option(help: "Per-expert accuracy of the modelled cross-layer-gate predictor (default 0.97).")
    var accuracy: String?

    @Option(help: "Seed of the modelled cross-layer-gate predictor (default 1).")
    var seed: String?

    @Option(help: "Eviction rule of the prefetching strategies' cache: lru or arc (default lru).")
    var eviction: CacheEviction?

    @Option(help: "Most of the budget that prefetched, not yet used experts may hold, in (0, 1] (default 1: no limit).")
    var buffer: String?

    @Option(help: "Prefetches left unissued: none (default), deadline (would land after its layer's gate), reuse (its victim is due back sooner), or both.")
    var admission: PrefetchAdmission?

    var settings: [(key: String, flag: String, value: String?)] {
        [("lookahead", "--lookahead", lookahead), ("accuracy", "--accuracy", accuracy), ("seed", "--seed", seed),
         ("eviction", "--eviction", eviction?.rawValue), ("buffer", "--buffer", buffer),
         ("admission", "--admission", admission?.rawValue)]
    }


}

/// `--threshold`, `--low-bits`, `--group-size`, `--low-hit`, `--skip-threshold`: settings of mixed-precision and of
/// the skipping strategies.
struct PrecisionArguments: ParsableArguments, SectionArguments {
    typealias Section = PrecisionOptions
    @Option(help: "mixed-precision: misses whose gate weight is below this are copied in low precision (default 0.3).")
    var threshold: String?

    @Option(help: "mixed-precision: bits per weight of the low-precision version, 8, 4 or 2 (default 4).")
    var lowBits: String?

    @Option(help: "mixed-precision: weights per quantisation scale (default 64).")
    var groupSize: String?

    @Option(help: "mixed-precision: on a hit of a low-precision expert that needs full precision, accept it or upgrade (copy the full one) (default accept).")
    var lowHit: LowPrecisionHit?

    @Option(help: "skip, mixed-skip: misses whose gate weight is below this are not computed (default 0.1).")
    var skipThreshold: String?

    var settings: [(key: String, flag: String, value: String?)] {
        [("threshold", "--threshold", threshold), ("low_bits", "--low-bits", lowBits), ("group_size", "--group-size", groupSize),
         ("low_hit", "--low-hit", lowHit?.rawValue), ("skip_threshold", "--skip-threshold", skipThreshold)]
    }


}

/// `--train-split`, `--cpu-layers`, `--rest`: settings of the static placement strategies.
struct PlacementArguments: ParsableArguments, SectionArguments {
    typealias Section = PlacementOptions
    @Option(help: "static-frequency: share of the sequences, in order, whose routing picks the pinned experts; measured on the rest; in (0, 1) (default 0.5).")
    var trainSplit: String?

    @Option(help: "n-cpu-moe: layers whose experts run on the host CPU, or auto: the fewest that let the other layers' experts fit in the budget (default auto).")
    var cpuLayers: String?

    @Option(help: "static-frequency, n-cpu-moe: a miss of an expert not placed is copied on demand (demand) or computed on the host CPU (cpu) (default demand).")
    var rest: String?

    @Option(help: "Several GPUs (hardware.gpus > 1): which GPU holds each expert: round-robin (default), frequency-balanced, replicated, affinity, balanced-comm, or a placement file (.json: layer -> expert -> GPUs).")
    var expertMap: String?

    @Option(help: "replicated: extra replicas per layer, given to its hottest experts (DeepSeek's EPLB; default 0).")
    var redundantExperts: String?

    @Option(help: "Several GPUs: where a token is between layers: sequence (its sequence's GPU, default) or expert (a request's lone token in a step stays on the GPU of its previous layer's experts: ExFlow).")
    var tokenLocation: String?

    var settings: [(key: String, flag: String, value: String?)] {
        [("train_split", "--train-split", trainSplit), ("cpu_layers", "--cpu-layers", cpuLayers), ("rest", "--rest", rest),
         ("expert_map", "--expert-map", expertMap), ("redundant_experts", "--redundant-experts", redundantExperts),
         ("token_location", "--token-location", tokenLocation)]
    }


}

/// `--numerics`, `--numerics-scale`, `--numerics-seed`: real expert outputs with OpenBLAS.
struct NumericsArguments: ParsableArguments {
    @Flag(help: "Also compute every layer's real MoE output (OpenBLAS) with the precision the strategy chose and the fp32 reference; fills output_rel_error_mean, output_rel_error_p99, output_cosine_min.")
    var numerics = false

    @Option(help: "Numerics at the profile's hidden and FFN sizes divided by this (default 16; 1 = full size).")
    var numericsScale: Int = 16

    @Option(help: "Seed of the numerics' synthetic weights and hidden states (default 1).")
    var numericsSeed: UInt64 = 1

    var options: NumericsOptions { NumericsOptions(scale: numericsScale, seed: numericsSeed) }
}

/// A comma-separated option value, each item parsed by `parse` (nil: an error naming the option and the item; a
/// thrown error is passed on). An empty list is an error.
func commaList<T>(_ text: String, option: String, expected: String, _ parse: (String) throws -> T?) throws -> [T] {
    let items = try text.split(separator: ",").map { part -> T in
        let item = part.trimmingCharacters(in: .whitespaces)
        guard let v = try parse(item) else { throw ValidationError("--\(option): '\(item)' is not \(expected)") }
        return v
    }
    if items.isEmpty { throw ValidationError("--\(option) is empty") }
    return items
}

/// A run configuration and what overrides its inputs (trace, model, hardware, runtime, `--set`), as compare and
/// plan take them.
struct RunInputArguments: ParsableArguments {
    @Option(help: "Run configuration (YAML, see docs/config.md).")
    var config: String = "configs/default.yaml"

    @Option(help: "Override the config's trace.")
    var trace: String?

    @Option(help: "Override the config's model: a preset or a profile file.")
    var model: String?

    @Option(help: "Override the config's hardware: a preset (see `moesim profiles`) or a profile file.")
    var hardware: String?

    @Option(help: "Override the config's runtime: ideal, pytorch-eager, cuda-graph, llama.cpp, or a runtime profile file.")
    var runtime: String?

    @OptionGroup var overrides: OverrideOptions

    /// The config with the overrides applied; `modelFromTrace`: a `--trace` without `--model` brings its own model
    /// (its preset, or the profile beside it), said on stdout.
    func load(modelFromTrace: Bool = false) throws -> RunConfig {
        guard FileManager.default.fileExists(atPath: config) else {
            throw ValidationError("config file '\(config)' not found; run from the repository root or pass --config FILE")
        }
        var cfg = try RunConfig.load(config)
        if let trace { cfg.tracePath = trace }
        if let model {
            cfg.model = try RunConfig.profile(named: model, preset: ModelProfile.preset)
        } else if let trace, modelFromTrace {
            let found = try ModelProfile.forTrace(trace, header: try RoutingTrace.header(of: trace))
            cfg.model = found.profile
            print("model: \(found.profile.name) from \(found.origin == "preset" ? "its preset" : found.origin + " (the profile beside the trace)")")
        }
        if let hardware { cfg.hardware = try RunConfig.profile(named: hardware, preset: HardwareProfile.preset) }
        if let runtime { cfg.runtime = try RunConfig.profile(named: runtime, preset: RuntimeProfile.preset) }
        try overrides.apply(model: &cfg.model, hardware: &cfg.hardware, runtime: &cfg.runtime)
        return cfg
    }

    /// Names the files `cfg` and these options read, for `files.check()`.
    func inputs(_ cfg: RunConfig, _ files: inout FileRoles) {
        for input in cfg.inputFiles { files.input(input == config ? "the config" : "a file the config reads", input) }
        files.input("--trace", trace)
        files.input("--model", model); files.input("--hardware", hardware); files.input("--runtime", runtime)
    }
}
