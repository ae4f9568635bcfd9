/// The host-to-GPU link: copy engines serving copies first come, first served.
///
///     var link = Link(engines: 1)
///     let (start, end) = link.enqueue(duration: 14_000_000, earliest: gate)
///
/// A copy starts on the engine that frees first (lowest index on ties) and never before `earliest`; it is not
/// pre-empted. Invariant: each engine's free time never decreases.
public struct Link: Sendable {
    /// When the first engine frees; kept apart from the others so the common one-engine link touches no array.
    private var firstFree: Int64 = 0
    private var otherFree: [Int64]
    /// Total engine-busy nanoseconds, summed over engines.
    public private(set) var busyNanoseconds: Int64 = 0

    public init(engines: Int) { otherFree = Array(repeating: 0, count: max(1, engines) - 1) }

    /// Schedules one copy of `duration` ns; returns when it starts and when it lands.
    @inline(__always)
    public mutating func enqueue(duration: Int64, earliest: Int64) -> (start: Int64, end: Int64) {
        busyNanoseconds += duration
        var engine = -1, free = firstFree
        for i in otherFree.indices where otherFree[i] < free { engine = i; free = otherFree[i] }
        let start = max(earliest, free)
        let end = start + duration
        if engine < 0 { firstFree = end } else { otherFree[engine] = end }
        return (start, end)
    }

    public var engines: Int { otherFree.count + 1 }

    /// When a copy queued now, not before `earliest`, would start.
    @inline(__always)
    public func earliestStart(after earliest: Int64) -> Int64 {
        var free = firstFree
        for f in otherFree where f < free { free = f }
        return max(earliest, free)
    }
}
