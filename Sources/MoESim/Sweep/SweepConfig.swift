import Foundation
import Yams

/// A sweep: the cartesian product of traces × models × hardware × axis values × policies, one replay per cell.
///
///     traces: [../traces/mixtral-synth.jsonl.gz]
///     models: [mixtral-8x7b]                      # presets or {preset: …, field: …} mappings
///     hardware: [a100-80gb-pcie, {preset: rtx3090, link_bytes_per_s: 8e9}]
///     policies: [lru, belady, pregated]
///     cache_scope: global
///     prefetch: {accuracy: 0.97}
///     axes:
///       budget: [10%, 25%, 50%]                   # required
///       hardware.link_bytes_per_s: [12e9, 25e9]   # any numeric profile field
///       runtime: [ideal, pytorch-eager]            # runtime presets or files; runtime.FIELD as for hardware
///       prefetch.accuracy: [0.9, 0.97]            # or lookahead, buffer, seed
///
/// Cells are numbered in a fixed order (trace, model, hardware, then axes in file order, policy last), so a
/// sweep, a resumed sweep and merged shards all give the same rows. docs/sweep.md lists every key.
public struct SweepConfig: Sendable {
    public struct Axis: Sendable, Equatable {
        public let key: String
        public let values: [String]

        public init(key: String, values: [String]) { self.key = key; self.values = values }
    }

    public var traces: [String]
    public var models: [ModelProfile]
    public var hardware: [HardwareProfile]
    /// The runtime of every cell (default `ideal`), unless a `runtime` axis sets it.
    public var runtime = RuntimeProfile.ideal
    public var policies: [PolicyKind]
    public var scope: CacheScope
    public var prefetch: PrefetchOptions
    public var precision: PrecisionOptions
    public var serving = ServingOptions()
    public var placement = PlacementOptions()
    public var axes: [Axis]
    /// Every file the config reads: itself, its traces and the profile files it names.
    public var inputFiles: [String] = []
    /// The settings its sections and axes give (`SettingScope` checks them against the grid's strategies and
    /// schedulers).
    public var givenSettings: [(key: String, named: String)] = []

    public init(traces: [String], models: [ModelProfile], hardware: [HardwareProfile], policies: [PolicyKind],
                scope: CacheScope = .global, prefetch: PrefetchOptions = PrefetchOptions(),
                precision: PrecisionOptions = PrecisionOptions(), axes: [Axis]) {
        self.traces = traces; self.models = models; self.hardware = hardware; self.policies = policies
        self.scope = scope; self.prefetch = prefetch; self.precision = precision; self.axes = axes
    }

    static let keys = ["traces", "models", "hardware", "runtime", "policies", "cache_scope", "prefetch", "precision", "placement", "serving", "axes"]

    /// One cell: everything one replay needs, and the axis values that name it.
    public struct Cell: Sendable {
        public let index: Int
        public let trace: String
        public let spec: ReplaySpec
        public let axisValues: [String]
    }

    /// Every cell, in order.
    /// - Throws: `ConfigError` for an axis value that does not parse, naming the axis.
    public func cells() throws -> [Cell] {
        let count = ([traces.count, models.count, hardware.count, policies.count] + axes.map(\.values.count))
            .reduce(1.0) { $0 * Double($1) }
        if count > Double(Limits.sweepCells) {
            throw ConfigError.invalidValue(field: "the sweep's grid", value: String(format: "%.0f cells", count),
                                           expected: "at most \(Limits.sweepCells) cells; split it into several sweeps or shards")
        }
        var out: [Cell] = []
        var combos: [[String]] = [[]]
        for axis in axes { combos = combos.flatMap { c in axis.values.map { c + [$0] } } }
        for trace in traces {
            for model in models {
                for hw in hardware {
                    for combo in combos {
                        var spec = ReplaySpec(model: model, hardware: hw, policy: .lru, scope: scope, budget: .share(0.25),
                                              prefetch: prefetch, precision: precision, serving: serving, runtime: runtime)
                        spec.placement = placement
                        do {
                            for (axis, value) in zip(axes, combo) { try Self.apply(axis.key, value, to: &spec) }
                            try spec.model.validate(); try spec.hardware.validate(); try spec.runtime.validate()
                            try spec.prefetch.validate(); try spec.precision.validate(); try spec.serving.validate()
                            try spec.placement.validate()
                        } catch let e as ConfigError {
                            let settings = (["model \(model.name)", "hardware \(hw.name)"] + zip(axes, combo).map { "\($0.key) \($1)" })
                                .joined(separator: ", ")
                            throw ConfigError.cell(settings: settings, reason: e.description)
                        }
                        for policy in policies {
                            spec.policy = policy
                            out.append(Cell(index: out.count, trace: trace, spec: spec, axisValues: combo))
                        }
                    }
                }
            }
        }
        return out
    }

    static func scope(_ value: String) throws -> CacheScope {
        guard let v = CacheScope(rawValue: value) else {
            throw ConfigError.invalidValue(field: "cache_scope", value: value,
                                           expected: CacheScope.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return v
    }

    /// Sets the cell's value of one axis.
    public static func apply(_ key: String, _ value: String, to spec: inout ReplaySpec) throws {
        let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
        switch (parts.first, parts.count) {
        case ("budget", 1): spec.budget = try Budget.parse(value)
        case ("cache_scope", 1): spec.scope = try scope(value)
        case ("model", 2): try spec.model.set(parts[1], to: value, origin: "axes")
        case ("hardware", 2): try spec.hardware.set(parts[1], to: value, origin: "axes")
        case (RuntimeProfile.section, 1): spec.runtime = try RunConfig.profile(named: value, preset: RuntimeProfile.preset)
        case (RuntimeProfile.section, 2): try spec.runtime.set(parts[1], to: value, origin: "axes")
        case (PrefetchOptions.section, 2): try spec.prefetch.set(parts[1], to: value, origin: "axes")
        case (PrecisionOptions.section, 2): try spec.precision.set(parts[1], to: value, origin: "axes")
        case (ServingOptions.section, 2): try spec.serving.set(parts[1], to: value, origin: "axes")
        case (PlacementOptions.section, 2): try spec.placement.set(parts[1], to: value, origin: "axes")
        default:
            let known = ["budget", "cache_scope"] + ModelProfile.fieldKeys.map { "model.\($0)" }
                + HardwareProfile.fieldKeys.map { "hardware.\($0)" } + ["runtime"]
                + RuntimeProfile.fieldKeys.map { "runtime.\($0)" } + PrefetchOptions.keys.map { "prefetch.\($0)" }
                + PrecisionOptions.keys.map { "precision.\($0)" } + ServingOptions.keys.map { "serving.\($0)" }
                + PlacementOptions.keys.map { "placement.\($0)" }
            throw ConfigError.unknownKey(key: key, origin: "axes", suggestion: closestMatch(key, among: known))
        }
    }

    public static func load(_ path: String) throws -> SweepConfig { try parse(YAMLFile(path: path).text(), path: path) }

    public static func parse(_ text: String, path: String) throws -> SweepConfig {
        let file = YAMLFile(path: path)
        let values = try file.topLevel(text, keys: keys)
        let resolve = file.resolve, fail = file.fail, scalar = file.scalar
        func list(_ n: Node) -> [Node] { n.sequence.map(Array.init) ?? [n] }
        /// A list that must hold something: an empty one would make an empty grid.
        func items(_ key: String) throws -> [Node] {
            let n = try required(key)
            let items = list(n)
            if items.isEmpty { throw fail(n, "'\(key)' is empty: a sweep needs at least one") }
            return items
        }

        func required(_ key: String) throws -> Node {
            guard let v = values[key] else { throw ConfigError.file(path: path, line: nil, message: "missing key '\(key)'") }
            return v
        }
        let traces = try items("traces").map { resolve(try scalar($0, "traces")) }
        let models = try items("models").map { n in
            try file.wrap(n) { () throws -> ModelProfile in
                let m = try RunConfig.profile(n, preset: ModelProfile.preset, path: path)
                try m.validate()
                return m
            }
        }
        let hardware = try items("hardware").map { n in
            try file.wrap(n) { () throws -> HardwareProfile in
                let h = try RunConfig.profile(n, preset: HardwareProfile.preset, path: path)
                try h.validate()
                return h
            }
        }
        let policies = try items("policies").map { n in try file.wrap(n) { try PolicyKind.named(try scalar(n, "policies")) } }
        var scope = CacheScope.global
        if let n = values["cache_scope"] {
            guard let v = CacheScope(rawValue: try scalar(n, "cache_scope")) else {
                throw fail(n, "cache_scope must be one of \(CacheScope.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            scope = v
        }
        let prefetch: PrefetchOptions = try values["prefetch"].map(file.options) ?? PrefetchOptions()
        let precision: PrecisionOptions = try values["precision"].map(file.options) ?? PrecisionOptions()
        let serving: ServingOptions = try values["serving"].map(file.options) ?? ServingOptions()
        guard let axesNode = values["axes"]?.mapping else {
            throw ConfigError.file(path: path, line: values["axes"]?.mark?.line,
                                   message: "missing or malformed 'axes': a mapping with at least budget: [..]")
        }
        var axes: [Axis] = []
        for (k, v) in axesNode {
            let key = try scalar(k, "an axis")
            let items = try list(v).map { try scalar($0, "axis \(key)") }
            if items.isEmpty { throw fail(v, "axis \(key) has no values") }
            axes.append(Axis(key: key, values: items))
        }
        guard axes.contains(where: { $0.key == "budget" }) else { throw fail(axesNode.keys.first ?? Node(""), "axes must include budget") }
        var config = SweepConfig(traces: traces, models: models, hardware: hardware, policies: policies, scope: scope,
                                 prefetch: prefetch, precision: precision, axes: axes)
        config.serving = serving
        config.placement = try values["placement"].map(file.options) ?? PlacementOptions()
        config.inputFiles = [path] + traces + RunConfig.profileFiles(
            list(try required("models")) + list(try required("hardware")) + (values["runtime"].map { [$0] } ?? []), in: file)
        if let n = values["runtime"] {
            config.runtime = try file.wrap(n) { () throws -> RuntimeProfile in
                let r = try RunConfig.profile(n, preset: RuntimeProfile.preset, path: path)
                try r.validate()
                return r
            }
        }
        // Check every axis value now, with the line of its axis, rather than mid-sweep; a value that sets what an
        // earlier one set (`0.5` and `0.50`) would run the same cell twice.
        for (k, v) in axesNode {
            let key = try scalar(k, "an axis")
            var earlier: [(text: String, spec: ReplaySpec)] = []
            for item in list(v) {
                var spec = ReplaySpec(model: models[0], hardware: hardware[0], policy: .lru, budget: .share(0.25))
                let text = try scalar(item, key)
                try file.wrap(item) { try apply(key, text, to: &spec) }
                if let same = earlier.first(where: { $0.spec == spec }) {
                    throw fail(item, "axis \(key) gives '\(text)' after '\(same.text)', the same setting: each value once")
                }
                earlier.append((text, spec))
            }
        }
        if let twice = Self.firstRepeat(policies.map(\.rawValue)) {
            throw fail(try required("policies"), "policies lists \(twice) twice: each strategy once")
        }
        if let twice = Self.firstRepeat(traces) {
            throw fail(try required("traces"), "traces lists \(twice) twice: each trace once")
        }
        // Every setting given must be taken by one of the grid's strategies and schedulers.
        config.givenSettings = ["prefetch", "precision", "serving", "placement"].flatMap { file.settings(values[$0], section: $0) }
            + axesNode.compactMap { k, _ in k.scalar.map { ($0.string, "axis \($0.string) (\(path):\((k.mark?.line).map(String.init) ?? "?"))") } }
        let schedulers = axes.first { $0.key == "serving.scheduler" }?.values.compactMap(ServingOptions.Scheduler.init(rawValue:))
            ?? [serving.scheduler]
        let gpus = axes.first { $0.key == "hardware.gpus" }?.values.compactMap { Int($0) } ?? config.hardware.map(\.gpus)
        try SettingScope.check(config.givenSettings, policies: policies, schedulers: schedulers, gpus: gpus)
        return config
    }

    /// The first value that appears twice, if any.
    static func firstRepeat(_ values: [String]) -> String? {
        var seen = Set<String>()
        return values.first { !seen.insert($0).inserted }
    }
}
