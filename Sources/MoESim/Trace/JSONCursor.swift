/// A forward-only reader of one JSON text held in bytes, for the hot path of trace parsing.
///
///     var c = JSONCursor(bytes)
///     try c.expect(UInt8(ascii: "{"))
///
/// It decodes exactly what token lines need (objects, arrays, integers, numbers, strings, null) and skips the rest,
/// without allocating per value. Errors are `JSONCursor.Failure`, turned into `TraceError` with the line by the caller.
struct JSONCursor {
    struct Failure: Error { let message: String }

    let bytes: UnsafeBufferPointer<UInt8>
    private(set) var index = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    var isAtEnd: Bool { index >= bytes.count }

    @inline(__always) mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// The next non-space byte, not consumed; 0 at the end.
    @inline(__always) mutating func peek() -> UInt8 {
        skipWhitespace()
        return index < bytes.count ? bytes[index] : 0
    }

    @inline(__always) mutating func expect(_ byte: UInt8) throws {
        if peek() != byte { throw expected(byte) }
        index += 1
    }

    /// The error of `expect` (out of line: the parser's hot path stays small).
    @inline(never) func expected(_ byte: UInt8) -> Failure {
        Failure(message: "expected '\(Character(Unicode.Scalar(byte)))' \(found())")
    }

    /// Consumes `byte` if it is next.
    @inline(__always) mutating func consume(_ byte: UInt8) -> Bool {
        if peek() == byte { index += 1; return true }
        return false
    }

    /// Consumes a literal `null` if it is next.
    @inline(__always) mutating func consumeNull() -> Bool {
        if peek() == UInt8(ascii: "n"), index + 4 <= bytes.count, bytes[index + 1] == UInt8(ascii: "u"),
           bytes[index + 2] == UInt8(ascii: "l"), bytes[index + 3] == UInt8(ascii: "l") {
            index += 4
            return true
        }
        return false
    }

    func found() -> String {
        guard index < bytes.count else { return "but the line ends" }
        let end = min(bytes.count, index + 12)
        return "but found '\(String(decoding: UnsafeBufferPointer(rebasing: bytes[index..<end]), as: UTF8.self))'"
    }

    /// A string's raw bytes (escapes are kept, not decoded: keys and enum values have none).
    mutating func string() throws -> UnsafeBufferPointer<UInt8> {
        try expect(UInt8(ascii: "\""))
        let start = index
        while index < bytes.count {
            let b = bytes[index]
            if b == UInt8(ascii: "\"") {
                let s = UnsafeBufferPointer(rebasing: bytes[start..<index])
                index += 1
                return s
            }
            index += b == UInt8(ascii: "\\") ? 2 : 1
        }
        throw Failure(message: "unterminated string")
    }

    /// A JSON integer (no fraction, no exponent).
    mutating func integer() throws -> Int {
        skipWhitespace()
        var negative = false
        if index < bytes.count && bytes[index] == UInt8(ascii: "-") { negative = true; index += 1 }
        let start = index
        var value = 0
        while index < bytes.count {
            let d = bytes[index] &- 0x30
            if d > 9 { break }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int(d))
            if o1 || o2 { throw Failure(message: "integer too large") }
            value = s
            index += 1
        }
        if index == start { throw Failure(message: "expected an integer \(found())") }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") || bytes[index] | 0x20 == UInt8(ascii: "e") {
            throw Failure(message: "expected an integer, found a fractional number")
        }
        return negative ? -value : value
    }

    /// A JSON number as a Double (exact for up to 19 significant digits and moderate exponents).
    mutating func number() throws -> Double {
        skipWhitespace()
        var negative = false
        if index < bytes.count && bytes[index] == UInt8(ascii: "-") { negative = true; index += 1 }
        var mantissa: UInt64 = 0, digits = 0, exponent = 0
        let start = index
        scanDigits(&mantissa, &digits, &exponent, fraction: false)
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            scanDigits(&mantissa, &digits, &exponent, fraction: true)
        }
        if index == start { throw Failure(message: "expected a number \(found())") }
        if index < bytes.count, bytes[index] | 0x20 == UInt8(ascii: "e") {
            index += 1
            var expNegative = false
            if index < bytes.count, bytes[index] == UInt8(ascii: "-") || bytes[index] == UInt8(ascii: "+") {
                expNegative = bytes[index] == UInt8(ascii: "-"); index += 1
            }
            var e = 0
            let expStart = index
            while index < bytes.count, bytes[index] &- 0x30 <= 9 { e = min(e * 10 + Int(bytes[index] &- 0x30), 10_000); index += 1 }
            if index == expStart { throw Failure(message: "malformed exponent") }
            exponent += expNegative ? -e : e
        }
        var value = Double(mantissa)
        if exponent != 0 {
            if exponent > 0 && exponent <= 22 { value *= JSONCursor.powersOfTen[exponent] }
            else if exponent < 0 && exponent >= -22 { value /= JSONCursor.powersOfTen[-exponent] }
            else { value *= pow10(exponent) }
        }
        return negative ? -value : value
    }

    /// Digits of a number's whole part or fraction: up to 19 significant digits go into the mantissa (leading zeros
    /// are not significant); further digits of the whole part scale it, further fraction digits are dropped.
    @inline(__always)
    private mutating func scanDigits(_ mantissa: inout UInt64, _ digits: inout Int, _ exponent: inout Int, fraction: Bool) {
        while index < bytes.count {
            let d = bytes[index] &- 0x30
            if d > 9 { break }
            if digits < 19 {
                mantissa = mantissa &* 10 &+ UInt64(d)
                if mantissa != 0 { digits += 1 }
                if fraction { exponent -= 1 }
            } else if !fraction {
                exponent += 1
            }
            index += 1
        }
    }

    private static let powersOfTen: [Double] = (0...22).map { p in (0..<p).reduce(1.0) { acc, _ in acc * 10 } }

    private func pow10(_ e: Int) -> Double {
        var result = 1.0, base = e < 0 ? 0.1 : 10.0, n = abs(e)
        while n > 0 { if n & 1 == 1 { result *= base }; base *= base; n >>= 1 }
        return result
    }

    /// Skips any JSON value (for fields this version does not read).
    mutating func skipValue() throws {
        switch peek() {
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            repeat {
                let b = peek()
                if b == 0 { throw Failure(message: "unterminated object or array") }
                if b == UInt8(ascii: "\"") { _ = try string(); continue }
                if b == UInt8(ascii: "{") || b == UInt8(ascii: "[") { depth += 1 }
                if b == UInt8(ascii: "}") || b == UInt8(ascii: "]") { depth -= 1 }
                index += 1
            } while depth > 0
        case UInt8(ascii: "t"), UInt8(ascii: "f"), UInt8(ascii: "n"):
            while index < bytes.count, (bytes[index] | 0x20) >= UInt8(ascii: "a"), (bytes[index] | 0x20) <= UInt8(ascii: "z") { index += 1 }
        default: _ = try number()
        }
    }
}

extension UnsafeBufferPointer where Element == UInt8 {
    /// Byte-wise equality with an ASCII literal, without building a String.
    func equals(_ literal: StaticString) -> Bool {
        guard count == literal.utf8CodeUnitCount else { return false }
        if count == 0 { return true }
        return memcmp(baseAddress!, literal.utf8Start, count) == 0
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
