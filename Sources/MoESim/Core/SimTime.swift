extension Duration {
    /// The duration in seconds, for wall-clock measurements (benchmarks, sweep timings).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

/// A point or span of simulated time in integer nanoseconds.
///
///     let copy = SimTime(seconds: 14e-3)   // 14 ms
///     copy.seconds                         // 0.014
///
/// Integer time keeps runs byte-identical: sums never depend on the order of floating-point rounding.
public struct SimTime: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    /// Rounds to the nearest nanosecond; a span of a positive duration is never rounded to zero. Durations beyond
    /// `Limits.simulatedNanoseconds` saturate there (a run whose worst case exceeds it is refused before it starts).
    @inlinable public init(seconds: Double) {
        let ns = min((seconds * 1e9).rounded(), Double(Limits.simulatedNanoseconds))
        self.nanoseconds = seconds > 0 ? max(1, Int64(ns)) : Int64(ns)
    }

    public static let zero = SimTime(nanoseconds: 0)

    @inlinable public var seconds: Double { Double(nanoseconds) * 1e-9 }

    @inlinable public static func < (a: SimTime, b: SimTime) -> Bool { a.nanoseconds < b.nanoseconds }
    @inlinable public static func + (a: SimTime, b: SimTime) -> SimTime { SimTime(nanoseconds: a.nanoseconds + b.nanoseconds) }
    @inlinable public static func - (a: SimTime, b: SimTime) -> SimTime { SimTime(nanoseconds: a.nanoseconds - b.nanoseconds) }
    @inlinable public static func += (a: inout SimTime, b: SimTime) { a.nanoseconds += b.nanoseconds }

    public var description: String { "\(nanoseconds)ns" }
}
