/// One named, overridable field of a profile, so that YAML sections and `--set` share one table of keys.
///
///     try model.set("top_k", to: "4", origin: "--set")
///
/// Each profile lists its fields once; unknown keys are refused with the closest known key as a suggestion.
public struct ProfileField<Profile>: Sendable {
    public let key: String
    let assign: @Sendable (inout Profile, String) -> Bool

    public static func int(_ key: String, _ path: WritableKeyPath<Profile, Int> & Sendable) -> ProfileField {
        ProfileField(key: key) { profile, text in
            guard let v = Int(text) ?? Double(text).flatMap({ $0 == $0.rounded() && abs($0) < 9e18 ? Int($0) : nil })
            else { return false }
            profile[keyPath: path] = v
            return true
        }
    }

    public static func double(_ key: String, _ path: WritableKeyPath<Profile, Double> & Sendable) -> ProfileField {
        ProfileField(key: key) { profile, text in
            guard let v = Double(text), v.isFinite else { return false }
            profile[keyPath: path] = v
            return true
        }
    }

    public static func string(_ key: String, _ path: WritableKeyPath<Profile, String> & Sendable) -> ProfileField {
        ProfileField(key: key) { profile, text in
            profile[keyPath: path] = text
            return true
        }
    }
}

/// A profile whose fields can be overridden by name.
public protocol OverridableProfile {
    static var section: String { get }
    static var fields: [ProfileField<Self>] { get }
}

extension OverridableProfile {
    public static var fieldKeys: [String] { fields.map(\.key) }

    /// Sets one field from its textual value.
    /// - Throws: `ConfigError.unknownKey` (with a suggestion) or `ConfigError.invalidValue`.
    public mutating func set(_ key: String, to text: String, origin: String) throws {
        guard let field = Self.fields.first(where: { $0.key == key }) else {
            throw ConfigError.unknownKey(key: "\(Self.section).\(key)", origin: origin,
                                         suggestion: closestMatch(key, among: Self.fieldKeys).map { "\(Self.section).\($0)" })
        }
        if !field.assign(&self, text) {
            throw ConfigError.invalidValue(field: "\(Self.section).\(key)", value: text, expected: "a number")
        }
    }
}

/// The candidate with the smallest edit distance, if it is close enough to be a likely typo.
public func closestMatch(_ word: String, among candidates: [String]) -> String? {
    func distance(_ a: [Character], _ b: [Character]) -> Int {
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return a.isEmpty ? b.count : row[b.count]
    }
    let w = Array(word)
    let best = candidates.map { ($0, distance(w, Array($0))) }.min { $0.1 < $1.1 || ($0.1 == $1.1 && $0.0 < $1.0) }
    guard let (name, d) = best, d <= max(2, word.count / 3) else { return nil }
    return name
}
