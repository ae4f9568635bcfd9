/// Errors in configuration: presets, keys, values and budgets. Each message says what to change.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unknownPreset(kind: String, name: String, known: [String])
    case unknownKey(key: String, origin: String, suggestion: String?)
    case invalidValue(field: String, value: String, expected: String)
    case badBudget(text: String, reason: String)
    case budgetTooSmall(budgetBytes: Int, neededBytes: Int, where: String)
    case budgetExceedsGPU(budgetBytes: Int, availableBytes: Int, hardware: String)
    case kvCacheExceedsGPU(neededBytes: Double, roomBytes: Double, seq: Int, hardware: String)
    case traceModelMismatch(field: String, trace: Int, model: Int, model_: String)
    case file(path: String, line: Int?, message: String)
    /// A sweep cell whose axis values are each valid but not together (e.g. top_k above experts).
    case cell(settings: String, reason: String)
    /// A setting given where nothing of the run takes it (`SettingScope`).
    case doesNotApply(setting: String, takers: String, run: String)

    public var description: String {
        switch self {
        case let .unknownPreset(kind, name, known):
            let hint = closestMatch(name, among: known).map { " Did you mean '\($0)'?" } ?? ""
            return "unknown \(kind) preset '\(name)'.\(hint) Known: \(known.joined(separator: ", "))"
        case let .unknownKey(key, origin, suggestion):
            let hint = suggestion.map { " Did you mean '\($0)'?" } ?? ""
            return "\(origin): unknown key '\(key)'.\(hint)"
        case let .invalidValue(field, value, expected):
            return "invalid value '\(value)' for \(field): expected \(expected)"
        case let .doesNotApply(setting, takers, run):
            return "\(setting) applies to \(takers); \(run): leave it out, or run what takes it"
        case let .badBudget(text, reason):
            return "invalid budget '\(text)': \(reason). Use bytes with a unit (16GiB, 40GB), a share (25%) or a count of experts (96experts)"
        case let .budgetTooSmall(budget, needed, place):
            return "budget of \(formatBytes(budget)) is too small (\(place)); raise it to at least \(formatBytes(needed))"
        case let .budgetExceedsGPU(budget, available, hardware):
            return "budget of \(formatBytes(budget)) exceeds what \(hardware) has for experts (\(formatBytes(available)) after the always-resident weights)"
        case let .kvCacheExceedsGPU(needed, room, seq, hardware):
            return "sequence \(seq) needs \(formatBytes(Int(min(needed, 1e18)))) of KV cache, but \(hardware) has \(formatBytes(Int(room))) left beside the always-resident weights and the expert budget; lower the budget or pick a GPU with more memory"
        case let .traceModelMismatch(field, trace, model, name):
            return "the trace has \(field) = \(trace) but model '\(name)' has \(model); pick the matching model or override model.\(field)"
        case let .file(path, line, message):
            return "\(path)\(line.map { ":\($0)" } ?? ""): \(message)"
        case let .cell(settings, reason):
            return "the sweep cell with \(settings): \(reason)"
        }
    }
}

/// Bytes in binary units with three significant decimals, for messages and summaries.
public func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes), unit = 0
    while abs(value) >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    if unit == 0 { return "\(bytes) B" }
    let rounded = (value * 100).rounded() / 100
    return "\(rounded) \(units[unit])"
}
