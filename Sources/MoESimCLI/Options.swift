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

/// `--lookahead`, `--accuracy`, `--seed`: settings of the prefetching strategies.
struct PrefetchArguments: ParsableArguments {
    @Option(help: "Layers ahead that oracle-prefetch sees (default 1).")
    var lookahead: Int?

    @Option(help: "Per-expert accuracy of the modelled cross-layer-gate predictor (default 0.97).")
    var accuracy: Double?

    @Option(help: "Seed of the modelled cross-layer-gate predictor (default 1).")
    var seed: UInt64?

    @Option(help: "Eviction rule of the prefetching strategies' cache: lru or arc (default lru).")
    var eviction: CacheEviction?

    @Option(help: "Most of the budget that prefetched, not yet used experts may hold, in (0, 1] (default 1: no limit).")
    var buffer: Double?

    /// The settings given on the command line, as keys and as typed (`SettingScope`).
    var given: [(key: String, named: String)] {
        [("prefetch.lookahead", "--lookahead", lookahead != nil), ("prefetch.accuracy", "--accuracy", accuracy != nil),
         ("prefetch.seed", "--seed", seed != nil), ("prefetch.eviction", "--eviction", eviction != nil),
         ("prefetch.buffer", "--buffer", buffer != nil)].filter(\.2).map { ($0.0, $0.1) }
    }

    /// `base` (from a config file, or the defaults) with the options given on the command line.
    func options(base: PrefetchOptions) throws -> PrefetchOptions {
        var o = base
        if let lookahead { o.lookahead = lookahead }
        if let accuracy { o.accuracy = accuracy }
        if let seed { o.seed = seed }
        if let eviction { o.eviction = eviction }
        if let buffer { o.bufferShare = buffer }
        try o.validate()
        return o
    }
}

/// `--threshold`, `--low-bits`, `--group-size`, `--low-hit`, `--skip-threshold`: settings of mixed-precision and of
/// the skipping strategies.
struct PrecisionArguments: ParsableArguments {
    @Option(help: "mixed-precision: misses whose gate weight is below this are copied in low precision (default 0.3).")
    var threshold: Double?

    @Option(help: "mixed-precision: bits per weight of the low-precision version, 8, 4 or 2 (default 4).")
    var lowBits: Int?

    @Option(help: "mixed-precision: weights per quantisation scale (default 64).")
    var groupSize: Int?

    @Option(help: "mixed-precision: on a hit of a low-precision expert that needs full precision, accept it or upgrade (copy the full one) (default accept).")
    var lowHit: LowPrecisionHit?

    @Option(help: "skip, mixed-skip: misses whose gate weight is below this are not computed (default 0.1).")
    var skipThreshold: Double?

    var given: [(key: String, named: String)] {
        [("precision.threshold", "--threshold", threshold != nil), ("precision.low_bits", "--low-bits", lowBits != nil),
         ("precision.group_size", "--group-size", groupSize != nil), ("precision.low_hit", "--low-hit", lowHit != nil),
         ("precision.skip_threshold", "--skip-threshold", skipThreshold != nil)].filter(\.2).map { ($0.0, $0.1) }
    }

    func options(base: PrecisionOptions) throws -> PrecisionOptions {
        var o = base
        if let threshold { o.threshold = threshold }
        if let skipThreshold { o.skipThreshold = skipThreshold }
        if let lowBits { o.lowBits = lowBits }
        if let groupSize { o.groupSize = groupSize }
        if let lowHit { o.lowHit = lowHit }
        try o.validate()
        return o
    }
}

/// `--train-split`, `--cpu-layers`, `--rest`: settings of the static placement strategies.
struct PlacementArguments: ParsableArguments {
    @Option(help: "static-frequency: share of the sequences, in order, whose routing picks the pinned experts; measured on the rest; in (0, 1) (default 0.5).")
    var trainSplit: Double?

    @Option(help: "n-cpu-moe: layers whose experts run on the host CPU, or auto: the fewest that let the other layers' experts fit in the budget (default auto).")
    var cpuLayers: String?

    @Option(help: "static-frequency, n-cpu-moe: a miss of an expert not placed is copied on demand (demand) or computed on the host CPU (cpu) (default demand).")
    var rest: String?

    var given: [(key: String, named: String)] {
        [("placement.train_split", "--train-split", trainSplit != nil), ("placement.cpu_layers", "--cpu-layers", cpuLayers != nil),
         ("placement.rest", "--rest", rest != nil)].filter(\.2).map { ($0.0, $0.1) }
    }

    func options(base: PlacementOptions) throws -> PlacementOptions {
        var o = base
        if let trainSplit { try o.set("train_split", to: "\(trainSplit)", origin: "--train-split") }
        if let cpuLayers { try o.set("cpu_layers", to: cpuLayers, origin: "--cpu-layers") }
        if let rest { try o.set("rest", to: rest, origin: "--rest") }
        try o.validate()
        return o
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
