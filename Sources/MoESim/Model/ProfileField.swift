import Yams

/// One named, overridable field of a profile, so that YAML sections and `--set` share one table of keys.
///
///     try model.set("top_k", to: "4", origin: "--set")
///
/// Each profile lists its fields once; unknown keys are refused with the closest known key as a suggestion.
public struct ProfileField<Profile>: Sendable {
    public let key: String
    /// The valid values, as docs/config.md and errors write them ("" for text fields).
    public let range: String
    /// The profile's current value, and whether it is in range (for profiles built in code, not parsed from text).
    let current: @Sendable (Profile) -> (text: String, inRange: Bool)
    /// Sets the field from text; throws `FieldError` (untyped: a typed-throws closure crashes the 6.3 optimiser
    /// under `-sanitize=fuzzer`).
    let assign: @Sendable (inout Profile, String) throws -> Void

    /// Why a value was refused: what was expected instead.
    struct FieldError: Error { let expected: String }

    /// A whole number in `range` (`1e9` is accepted; `1.5`, `0x10` and `1e300` are not).
    public static func int(_ key: String, _ path: WritableKeyPath<Profile, Int> & Sendable,
                           _ range: ClosedRange<Int>) -> ProfileField {
        number(key, path, range, kind: "a whole number", parse: DecimalText.integer)
    }

    /// A decimal number in `range`.
    public static func double(_ key: String, _ path: WritableKeyPath<Profile, Double> & Sendable,
                              _ range: ClosedRange<Double>) -> ProfileField {
        number(key, path, range, kind: "a number", parse: DecimalText.double)
    }

    private static func number<T: Comparable & Sendable>(
        _ key: String, _ path: WritableKeyPath<Profile, T> & Sendable, _ range: ClosedRange<T>, kind: String,
        parse: @escaping @Sendable (String) -> T?
    ) -> ProfileField {
        let expected = "\(kind) in \(Limits.describe(range))"
        return ProfileField(key: key, range: Limits.describe(range),
                            current: { ("\($0[keyPath: path])", range.contains($0[keyPath: path])) }) {
            profile, text in
            guard let v = parse(text), range.contains(v) else { throw FieldError(expected: expected) }
            profile[keyPath: path] = v
        }
    }

    /// One of an enumeration's raw values.
    public static func choice<Value: RawRepresentable & CaseIterable & Sendable>(
        _ key: String, _ path: WritableKeyPath<Profile, Value> & Sendable
    ) -> ProfileField where Value.RawValue == String {
        let names = Value.allCases.map(\.rawValue)
        return ProfileField(key: key, range: names.joined(separator: " or "), current: { ($0[keyPath: path].rawValue, true) }) {
            profile, text in
            guard let v = Value(rawValue: text) else { throw FieldError(expected: names.joined(separator: " or ")) }
            profile[keyPath: path] = v
        }
    }

    public static func string(_ key: String, _ path: WritableKeyPath<Profile, String> & Sendable) -> ProfileField {
        ProfileField(key: key, range: "", current: { ($0[keyPath: path], true) }) { profile, text in profile[keyPath: path] = text }
    }
}

extension ProfileField where Profile: OverridableProfile {
    /// - Throws: `ConfigError.invalidValue` when `profile`'s value of this field is out of range.
    func check(_ profile: Profile) throws {
        let (text, inRange) = current(profile)
        guard inRange else {
            throw ConfigError.invalidValue(field: "\(Profile.section).\(key)", value: text, expected: "a value in \(range)")
        }
    }
}

/// A profile whose fields can be overridden by name.
public protocol OverridableProfile {
    static var section: String { get }
    static var fields: [ProfileField<Self>] { get }
    /// The presets' names: a profile of one's own may not take one (its rows would pass for the preset's).
    static var presetNames: [String] { get }
    /// Sets a field written as a list or mapping (`hardware.tiers`) from `value` in the file at `path`; false when
    /// `key` is not such a field. `section` is the whole section's mapping, for checks against its other keys.
    static func setStructured(_ key: String, _ value: Node, section: Node, on profile: inout Self, path: String) throws -> Bool
}

extension OverridableProfile {
    public static var fieldKeys: [String] { fields.map(\.key) }

    public static func setStructured(_ key: String, _ value: Node, section: Node, on profile: inout Self, path: String) throws -> Bool { false }

    /// Sets one field from its textual value.
    /// - Throws: `ConfigError.unknownKey` (with a suggestion) or `ConfigError.invalidValue`.
    public mutating func set(_ key: String, to text: String, origin: String) throws {
        guard let field = Self.fields.first(where: { $0.key == key }) else {
            throw ConfigError.unknownKey(key: "\(Self.section).\(key)", origin: origin,
                                         suggestion: closestMatch(key, among: Self.fieldKeys).map { "\(Self.section).\($0)" })
        }
        do { try field.assign(&self, text) } catch let error as ProfileField<Self>.FieldError {
            throw ConfigError.invalidValue(field: "\(Self.section).\(key)", value: text, expected: error.expected)
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
