/// A section of strategy settings that config files (`SECTION: {key: value}`), sweep axes (`SECTION.key`) and
/// `--set`-style text all write the same way.
public protocol OptionSection: Sendable, Equatable {
    /// The config section and axis prefix, e.g. `prefetch`.
    static var section: String { get }
    /// The option names, for errors and suggestions.
    static var keys: [String] { get }
    init()
    /// Sets one option from its text.
    /// - Throws: `ConfigError.unknownKey` (with a suggestion) or `ConfigError.invalidValue`.
    mutating func set(_ key: String, to text: String, origin: String) throws
    func validate() throws
}

extension OptionSection {
    /// The error for a key this section does not have.
    static func unknown(_ key: String, origin: String) -> ConfigError {
        .unknownKey(key: "\(section).\(key)", origin: origin,
                    suggestion: closestMatch(key, among: keys).map { "\(section).\($0)" })
    }

    /// A decimal number from its text, in `range`.
    static func number(_ key: String, _ text: String, in range: ClosedRange<Double>) throws -> Double {
        guard let v = DecimalText.double(text), range.contains(v) else {
            throw ConfigError.invalidValue(field: "\(section).\(key)", value: text,
                                           expected: "a number in \(Limits.describe(range))")
        }
        return v
    }

    /// A whole decimal number from its text, in `range`.
    static func integer(_ key: String, _ text: String, in range: ClosedRange<Int>) throws -> Int {
        guard let v = DecimalText.integer(text), range.contains(v) else {
            throw ConfigError.invalidValue(field: "\(section).\(key)", value: text,
                                           expected: "a whole number in \(Limits.describe(range))")
        }
        return v
    }
}

/// What `mixed-precision` does on a hit of an expert held in low precision by a step that needs it in full.
public enum LowPrecisionHit: String, CaseIterable, Sendable, Codable {
    /// Compute with the low-precision version already on the GPU.
    case accept
    /// Copy the full-precision version in its place (a demand copy) and compute with it.
    case upgrade
}

/// Settings of `mixed-precision` (HOBBIT): which misses are copied in low precision, and at what size.
///
///     precision: {threshold: 0.3, low_bits: 4, group_size: 64, low_hit: accept}
///
/// A missed expert whose largest gate weight in the step is below `threshold` is copied as its `low_bits` version:
/// `params · low_bits / 8` bytes plus a 2-byte scale per `group_size` weights (docs/numerics.md).
public struct PrecisionOptions: OptionSection {
    public static let section = "precision"
    public static let keys = ["threshold", "low_bits", "group_size", "low_hit", "skip_threshold"]

    /// Gate weights below it are served in low precision (0: never, above 1: always).
    public var threshold = 0.3
    /// Bits per weight of the low-precision version: 8, 4 or 2.
    public var lowBits = 4
    /// Weights per quantisation scale.
    public var groupSize = 64
    public var lowHit = LowPrecisionHit.accept
    /// `skip` and `mixed-skip`: misses whose largest gate weight is below it are not computed (0: never).
    public var skipThreshold = 0.1

    public init() {}

    public init(threshold: Double, lowBits: Int = 4, groupSize: Int = 64, lowHit: LowPrecisionHit = .accept) {
        self.threshold = threshold; self.lowBits = lowBits; self.groupSize = groupSize; self.lowHit = lowHit
    }

    public mutating func set(_ key: String, to text: String, origin: String) throws {
        switch key {
        case "threshold": threshold = try Self.number(key, text, in: Limits.precisionThreshold)
        case "low_bits": lowBits = try Self.integer(key, text, in: Limits.lowBits.min()!...Limits.lowBits.max()!)
        case "group_size": groupSize = try Self.integer(key, text, in: Limits.groupSize)
        case "skip_threshold": skipThreshold = try Self.number(key, text, in: Limits.precisionThreshold)
        case "low_hit":
            guard let v = LowPrecisionHit(rawValue: text) else {
                throw ConfigError.invalidValue(field: "precision.low_hit", value: text, expected: "accept or upgrade")
            }
            lowHit = v
        default: throw Self.unknown(key, origin: origin)
        }
    }

    public func validate() throws {
        if !Limits.lowBits.contains(lowBits) {
            throw ConfigError.invalidValue(field: "precision.low_bits", value: "\(lowBits)", expected: "2, 4 or 8")
        }
        try Limits.check(groupSize, in: Limits.groupSize, "precision.group_size")
        try Limits.check(threshold, in: Limits.precisionThreshold, "precision.threshold")
        try Limits.check(skipThreshold, in: Limits.precisionThreshold, "precision.skip_threshold")
    }

    /// Bytes of one expert of `params` weights in the low-precision version.
    public func lowBytes(params: Int) -> Int { QuantizedWeights.packedBytes(count: params, bits: lowBits, groupSize: groupSize) }
}
