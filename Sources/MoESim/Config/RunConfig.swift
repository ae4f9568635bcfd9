import Foundation
import Yams

/// A run configuration file: which trace, model, GPU, budget and policies (`configs/default.yaml`).
///
///     trace: ../traces/mixtral-synth.jsonl.gz   # relative to this file
///     model: mixtral-8x7b                       # a preset, or {preset: mixtral-8x7b, top_k: 2, …}
///     hardware: {preset: a100-80gb-pcie, link_bytes_per_s: 16e9}
///     runtime: pytorch-eager                    # optional; default ideal (the pure roofline)
///     budget: 25%
///     cache_scope: global
///     policies: [on-demand, lru, belady, all-resident]
///     output: ../reports/compare.csv
///
/// One section per component, each chosen by name, any preset field overridable inline (STYLE.md, Config).
/// Unknown keys and bad values are errors naming the file, line and key, with the closest key as a suggestion.
public struct RunConfig: Sendable {
    public var tracePath: String
    public var model: ModelProfile
    public var hardware: HardwareProfile
    public var runtime = RuntimeProfile.ideal
    public var budget: Budget
    public var scope: CacheScope
    public var policies: [PolicyKind]
    public var outputPath: String?
    /// Every file the config reads: itself, its trace and the profile files it names (none of which a run may write).
    public var inputFiles: [String] = []
    /// The settings its sections give (`SettingScope` checks them against the strategies and scheduler).
    public var givenSettings: [(key: String, named: String)] = []
    public var prefetch = PrefetchOptions()
    public var precision = PrecisionOptions()
    public var serving = ServingOptions()
    public var placement = PlacementOptions()

    static let keys = ["trace", "model", "hardware", "runtime", "budget", "cache_scope", "policies", "prefetch", "precision", "placement", "serving", "output"]

    public init(tracePath: String, model: ModelProfile, hardware: HardwareProfile, budget: Budget,
                scope: CacheScope = .global, policies: [PolicyKind] = PolicyKind.allCases, outputPath: String? = nil) {
        self.tracePath = tracePath; self.model = model; self.hardware = hardware; self.budget = budget
        self.scope = scope; self.policies = policies; self.outputPath = outputPath
    }

    /// Loads and checks a YAML file; relative paths in it are relative to the file's folder.
    /// - Throws: `ConfigError.file` with the line of the offending key.
    public static func load(_ path: String) throws -> RunConfig { try parse(YAMLFile(path: path).text(), path: path) }

    public static func parse(_ text: String, path: String) throws -> RunConfig {
        let file = YAMLFile(path: path)
        let values = try file.topLevel(text, keys: keys)
        let resolve = file.resolve, fail = file.fail, scalar = file.scalar
        func required(_ key: String) throws -> Node {
            guard let v = values[key] else { throw ConfigError.file(path: path, line: nil, message: "missing key '\(key)'") }
            return v
        }

        let traceNode = try required("trace")
        let modelNode = try required("model"), hardwareNode = try required("hardware")
        let model: ModelProfile = try file.wrap(modelNode) { try profile(modelNode, preset: ModelProfile.preset, path: path) }
        let hardware: HardwareProfile = try file.wrap(hardwareNode) {
            try profile(hardwareNode, preset: HardwareProfile.preset, path: path)
        }
        let budgetNode = try required("budget")
        let budget = try file.wrap(budgetNode) { try Budget.parse(try scalar(budgetNode, "budget")) }
        try checkTiers(hardware, model: model, budget: budget, node: hardwareNode, file: file)
        var scope = CacheScope.global
        if let n = values["cache_scope"] {
            let s = try scalar(n, "cache_scope")
            guard let v = CacheScope(rawValue: s) else {
                throw fail(n, "cache_scope must be one of \(CacheScope.allCases.map(\.rawValue).joined(separator: ", ")), found '\(s)'")
            }
            scope = v
        }
        var policies = PolicyKind.allCases
        if let n = values["policies"] {
            guard let list = n.sequence else { throw fail(n, "policies must be a list, e.g. [lru, belady]") }
            policies = try list.map { item in try file.wrap(item) { try PolicyKind.named(try scalar(item, "policies")) } }
            if policies.isEmpty { throw fail(n, "policies is empty") }
        }
        var config = RunConfig(tracePath: resolve(try scalar(traceNode, "trace")), model: model, hardware: hardware,
                               budget: budget, scope: scope, policies: policies,
                               outputPath: try values["output"].map { resolve(try scalar($0, "output")) })
        if let n = values["runtime"] {
            config.runtime = try file.wrap(n) { try profile(n, preset: RuntimeProfile.preset, path: path) }
        }
        if let n = values["prefetch"] { config.prefetch = try file.options(n) }
        if let n = values["precision"] { config.precision = try file.options(n) }
        if let n = values["serving"] { config.serving = try file.options(n) }
        if let n = values["placement"] { config.placement = try file.options(n) }
        config.givenSettings = ["prefetch", "precision", "serving", "placement"].flatMap { file.settings(values[$0], section: $0) }
        config.inputFiles = [path, config.tracePath] + profileFiles([modelNode, hardwareNode] + (values["runtime"].map { [$0] } ?? []), in: file)
        return config
    }

    /// Checks the hardware's memory tiers against the model and budget, naming the line of the field at fault.
    static func checkTiers(_ hardware: HardwareProfile, model: ModelProfile, budget: Budget, node: Node, file: YAMLFile) throws {
        do {
            try hardware.tiers.validate(expertBytes: model.expertBytes, totalExpertBytes: model.totalExpertBytes,
                                        budgetBytes: budget.bytes(for: model))
        } catch let ConfigError.invalidValue(field, value, expected) {
            let key = field.replacingOccurrences(of: "hardware.", with: "")
            let list = node.mapping?["tiers"]
            let at = list.flatMap { TierList.entry(setting: key, in: $0) }
                ?? node.mapping?.first { $0.key.scalar?.string == key }?.key ?? node
            throw file.fail(at, ConfigError.invalidValue(field: field, value: value, expected: expected).description)
        }
    }

    /// The profile files that `nodes` name (scalars ending in `.yaml` or `.yml`), resolved against `file`.
    static func profileFiles(_ nodes: [Node], in file: YAMLFile) -> [String] {
        nodes.compactMap { n in n.scalar.map(\.string).flatMap { isProfileFile($0) ? file.resolve($0) : nil } }
    }

    static func isProfileFile(_ name: String) -> Bool { name.hasSuffix(".yaml") || name.hasSuffix(".yml") }

    /// A profile file: the mapping of a profile section (`preset:` and field overrides) as a whole YAML file.
    public static func profileFile<P: OverridableProfile>(_ path: String, preset: (String) throws -> P) throws -> P {
        try profileFile(text: try YAMLFile(path: path).text(), path: path, preset: preset)
    }

    /// A profile file's text, read as `profileFile` reads the file at `path` (for fuzzing and tests).
    public static func profileFile<P: OverridableProfile>(text: String, path: String, preset: (String) throws -> P) throws -> P {
        let node = try YAMLFile(path: path).compose(text)
        guard let node, node.mapping != nil else {
            throw ConfigError.file(path: path, line: 1, message: "a profile file is a mapping: preset: NAME, then fields to override")
        }
        return try profile(node, preset: preset, path: path)
    }

    /// A preset name, or a profile file's path (CLI `--model`, `--hardware`, `--runtime`).
    public static func profile<P: OverridableProfile>(named name: String, preset: (String) throws -> P) throws -> P {
        if isProfileFile(name) { return try profileFile(name, preset: preset) }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: name, isDirectory: &isFolder) && !P.presetNames.contains(name) {
            throw ConfigError.file(path: name, line: nil, message: isFolder.boolValue
                ? "is a folder, not a \(P.section) preset or profile file (a profile file's name ends in .yaml or .yml)"
                : "is not a profile file: a profile file's name ends in .yaml or .yml")
        }
        return try preset(name)
    }

    /// A profile section: a preset name or profile file, or a mapping with `preset` and field overrides.
    /// A scalar ending in `.yaml` or `.yml` names a profile file (relative to this file) holding such a mapping,
    /// as `moesim calibrate` writes.
    static func profile<P: OverridableProfile>(_ node: Node, preset: (String) throws -> P, path: String) throws -> P {
        if let name = node.scalar?.string {
            guard isProfileFile(name) else { return try preset(name) }
            return try profileFile(YAMLFile(path: path).resolve(name), preset: preset)
        }
        guard let mapping = node.mapping else {
            throw ConfigError.file(path: path, line: node.mark?.line, message: "\(P.section) must be a preset name or a mapping")
        }
        guard let presetNode = mapping["preset"], let presetName = presetNode.scalar?.string else {
            throw ConfigError.file(path: path, line: node.mark?.line, message: "\(P.section) mapping needs 'preset: NAME'")
        }
        var profile = try YAMLFile(path: path).wrap(presetNode) { try preset(presetName) }
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                throw ConfigError.file(path: path, line: keyNode.mark?.line, message: "\(P.section) keys are names (\(P.fieldKeys.joined(separator: ", "))), not lists or mappings")
            }
            guard key != "preset" else { continue }
            if try P.setStructured(key, value, section: node, on: &profile, path: path) { continue }
            guard let text = value.scalar?.string else {
                throw ConfigError.file(path: path, line: value.mark?.line, message: "\(P.section).\(key) must be a single value")
            }
            if key == "name" && P.presetNames.contains(text) {
                throw ConfigError.file(path: path, line: keyNode.mark?.line, message: "\(P.section).name '\(text)' is a preset's: give this profile a name of its own, so that its rows are not taken for the preset's")
            }
            do { try profile.set(key, to: text, origin: path) } catch let e as ConfigError {
                throw ConfigError.file(path: path, line: keyNode.mark?.line, message: e.description.replacingOccurrences(of: "\(path): ", with: ""))
            }
        }
        return profile
    }
}

/// Removes `.` and `dir/..` components without touching the file system: "configs/../traces/a" is "traces/a".
func normalizePath(_ path: String) -> String {
    var parts: [Substring] = []
    for part in path.split(separator: "/", omittingEmptySubsequences: true) {
        if part == "." { continue }
        if part == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
        parts.append(part)
    }
    let joined = parts.joined(separator: "/")
    return path.hasPrefix("/") ? "/" + joined : (joined.isEmpty ? "." : joined)
}
