/// The host-to-GPU link: copy engines serving copies first come, first served.
///
///     let link = Link(engines: 1)
///     let (start, end) = link.enqueue(duration: 14_000_000, earliest: gate)
///
/// A copy starts on the engine that frees first (lowest index on ties) and never before `earliest`; it is not
/// pre-empted. Invariant: each engine's free time never decreases.
///
/// A class over a raw buffer, like `ExpertMemory`: a struct holding an array of free times made every copy in the
/// replay loop check (and, for a one-engine link's empty array, reallocate) that array's storage
/// (docs/performance.md, "Prefetching against LRU"). One instance serves one replay.
public final class Link {
    /// When each engine frees.
    private let free: UnsafeMutablePointer<Int64>
    public let engines: Int
    /// Total engine-busy nanoseconds, summed over engines.
    public private(set) var busyNanoseconds: Int64 = 0

    public init(engines: Int) {
        self.engines = max(1, engines)
        free = .allocate(capacity: self.engines)
        free.initialize(repeating: 0, count: self.engines)
    }

    deinit { free.deallocate() }

    /// Schedules one copy of `duration` ns; returns when it starts and when it lands.
    @inline(__always)
    public func enqueue(duration: Int64, earliest: Int64) -> (start: Int64, end: Int64) {
        busyNanoseconds += duration
        let engine = firstFreeEngine()
        let start = max(earliest, free[engine])
        let end = start + duration
        free[engine] = end
        return (start, end)
    }

    /// When a copy queued now, not before `earliest`, would start.
    @inline(__always)
    public func earliestStart(after earliest: Int64) -> Int64 { max(earliest, free[firstFreeEngine()]) }

    @inline(__always) private func firstFreeEngine() -> Int {
        var engine = 0, i = 1
        while i < engines {  // not `for i in 1..<engines`: forming the range cost 1.3 instructions per LRU access
            if free[i] < free[engine] { engine = i }
            i += 1
        }
        return engine
    }
}
