/// The host-to-GPU link: copy engines serving copies first come, first served.
///
///     var link = Link(engines: 1)
///     let (start, end) = link.enqueue(duration: 14_000_000, earliest: gate)
///
/// A copy starts on the engine that frees first (lowest index on ties) and never before `earliest`; it is not
/// pre-empted. Invariant: each engine's free time never decreases.
public struct Link: Sendable {
    private var engineFree: [Int64]
    /// Total engine-busy nanoseconds, summed over engines.
    public private(set) var busyNanoseconds: Int64 = 0

    public init(engines: Int) { engineFree = Array(repeating: 0, count: max(1, engines)) }

    /// Schedules one copy of `duration` ns; returns when it starts and when it lands.
    @inline(__always)
    public mutating func enqueue(duration: Int64, earliest: Int64) -> (start: Int64, end: Int64) {
        var engine = 0
        if engineFree.count > 1 {
            for i in 1..<engineFree.count where engineFree[i] < engineFree[engine] { engine = i }
        }
        let start = max(earliest, engineFree[engine])
        let end = start + duration
        engineFree[engine] = end
        busyNanoseconds += duration
        return (start, end)
    }

    public var engines: Int { engineFree.count }
}
