/// An expert memory budget as a user writes it: bytes with a unit, a share of all experts' bytes, or a count of
/// full-precision experts.
///
///     try Budget.parse("16GiB")      // .bytes(17_179_869_184)
///     try Budget.parse("25%")        // .share(0.25)
///     try Budget.parse("96experts")  // .experts(96)
///
/// Decimal units (KB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB) powers of 1024; a bare number
/// is bytes.
public enum Budget: Equatable, Sendable, CustomStringConvertible {
    case bytes(Int)
    case share(Double)
    case experts(Int)

    private static let units: [(String, Double)] = [
        ("kib", 1024), ("mib", 1_048_576), ("gib", 1_073_741_824), ("tib", 1_099_511_627_776),
        ("kb", 1e3), ("mb", 1e6), ("gb", 1e9), ("tb", 1e12), ("b", 1),
    ]

    /// - Throws: `ConfigError.badBudget` saying what is wrong: not a decimal number, negative, above 100%, a
    ///   fractional count of experts, more bytes than `Limits.budgetBytes` or more experts than `Limits.flatExperts`.
    public static func parse(_ text: String) throws -> Budget {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        func fail(_ reason: String) -> ConfigError { .badBudget(text: text, reason: reason) }
        func number(_ s: Substring) throws -> Double {
            guard let v = DecimalText.double(String(s)) else { throw fail("'\(s.trimmingCharacters(in: .whitespaces))' is not a decimal number") }
            if v < 0 { throw fail("a budget cannot be negative") }
            return v
        }
        func bytes(_ v: Double) throws -> Budget {
            guard v <= Double(Limits.budgetBytes) else { throw fail("more than \(formatBytes(Limits.budgetBytes))") }
            return .bytes(Int(v.rounded()))
        }
        if t.isEmpty { throw fail("it is empty") }
        if t.hasSuffix("%") {
            let v = try number(t.dropLast())
            if v > 100 { throw fail("a share above 100% holds more than every expert") }
            return .share(v / 100)
        }
        for suffix in ["experts", "expert"] where t.hasSuffix(suffix) {
            let v = try number(t.dropLast(suffix.count))
            guard v == v.rounded() else { throw fail("a count of experts is a whole number") }
            guard v <= Double(Limits.flatExperts) else { throw fail("more than \(Limits.flatExperts) experts") }
            return .experts(Int(v))
        }
        for (unit, scale) in units where t.hasSuffix(unit) {
            return try bytes(try number(t.dropLast(unit.count)) * scale)
        }
        if DecimalText.double(t) != nil { return try bytes(try number(t[...])) }
        throw fail("unknown unit")
    }

    /// Bytes for a model: a share is of all routed experts' bytes, rounded down to whole bytes.
    public func bytes(for model: ModelProfile) -> Int {
        switch self {
        case let .bytes(b): b
        case let .share(s): Int((Double(model.totalExpertBytes) * s).rounded(.down))
        case let .experts(n): n * model.expertBytes
        }
    }

    public var description: String {
        switch self {
        case let .bytes(b): "\(b)B"
        case let .share(s): "\(s * 100)%"
        case let .experts(n): "\(n)experts"
        }
    }
}

import Foundation
