import HeapModule

/// What happens in a replay, for scenario logs and timelines. One enum, so every event is visible in one place.
public enum SimEvent: Equatable, Sendable, CustomStringConvertible {
    case layerStart(step: Int, layer: Int)
    /// The gate reveals the layer's experts (after the layer's non-expert compute).
    case gate(step: Int, layer: Int)
    case hit(expert: Int)
    case miss(expert: Int)
    case evict(expert: Int)
    /// An expert placed on the GPU before the first step (all-resident, cpu-fallback's placement).
    case preload(expert: Int)
    /// A prefetch copy is queued, or cancelled before it started.
    case prefetch(expert: Int)
    case cancel(expert: Int)
    case copyStart(expert: Int)
    case copyEnd(expert: Int)
    case computeStart(expert: Int)
    case computeEnd(expert: Int)
    /// An expert computed on the host CPU (`cpu-fallback`).
    case cpuStart(expert: Int)
    case cpuEnd(expert: Int)
    /// A read from the SSD into host memory (three tiers), and an expert evicted from host memory.
    case readStart(expert: Int)
    case readEnd(expert: Int)
    case hostEvict(expert: Int)
    case layerEnd(step: Int, layer: Int)

    /// Tie-break among events at the same time: completions before starts.
    public var priority: Int {
        switch self {
        case .copyEnd, .computeEnd, .cpuEnd, .readEnd: 0
        case .layerEnd: 1
        case .layerStart: 2
        case .gate: 3
        case .hit, .miss, .evict, .prefetch, .cancel, .preload, .hostEvict: 4
        case .copyStart, .computeStart, .cpuStart, .readStart: 5
        }
    }

    public var description: String {
        switch self {
        case let .layerStart(s, l): "layerStart(\(s),\(l))"
        case let .gate(s, l): "gate(\(s),\(l))"
        case let .hit(e): "hit(\(e))"
        case let .miss(e): "miss(\(e))"
        case let .evict(e): "evict(\(e))"
        case let .preload(e): "preload(\(e))"
        case let .prefetch(e): "prefetch(\(e))"
        case let .cancel(e): "cancel(\(e))"
        case let .copyStart(e): "copyStart(\(e))"
        case let .copyEnd(e): "copyEnd(\(e))"
        case let .computeStart(e): "computeStart(\(e))"
        case let .computeEnd(e): "computeEnd(\(e))"
        case let .cpuStart(e): "cpuStart(\(e))"
        case let .cpuEnd(e): "cpuEnd(\(e))"
        case let .readStart(e): "readStart(\(e))"
        case let .readEnd(e): "readEnd(\(e))"
        case let .hostEvict(e): "hostEvict(\(e))"
        case let .layerEnd(s, l): "layerEnd(\(s),\(l))"
        }
    }
}

/// An event with its time, ordered by (time, priority, insertion) so that equal times replay deterministically
/// (SimPy's `(time, priority, eid)`, swift-nio's `EmbeddedScheduledTask.insertOrder`).
public struct ScheduledEvent: Comparable, Sendable {
    public let time: SimTime
    public let priority: Int
    public let sequence: Int
    public let event: SimEvent

    public static func < (a: ScheduledEvent, b: ScheduledEvent) -> Bool {
        (a.time, a.priority, a.sequence) < (b.time, b.priority, b.sequence)
    }
    public static func == (a: ScheduledEvent, b: ScheduledEvent) -> Bool {
        (a.time, a.priority, a.sequence) == (b.time, b.priority, b.sequence)
    }
}

/// A min-queue of scheduled events. The replay emits events as it decides them (a copy's end is known before the
/// compute that precedes it in time), and the queue puts them back into time order.
public struct EventQueue: Sendable {
    private var heap = Heap<ScheduledEvent>()
    private var inserted = 0

    public init() {}

    public mutating func schedule(_ event: SimEvent, at time: SimTime) {
        heap.insert(ScheduledEvent(time: time, priority: event.priority, sequence: inserted, event: event))
        inserted += 1
    }

    public mutating func popNext() -> ScheduledEvent? { heap.popMin() }
    public var isEmpty: Bool { heap.isEmpty }
    public var count: Int { heap.count }
}

/// Where the replay reports events. `NoEvents` compiles away; `EventLog` keeps them in time order.
public protocol EventSink {
    static var isEnabled: Bool { get }
    mutating func record(_ event: SimEvent, at nanoseconds: Int64)
}

public struct NoEvents: EventSink {
    public init() {}
    public static var isEnabled: Bool { false }
    @inline(__always) public mutating func record(_ event: SimEvent, at nanoseconds: Int64) {}
}

/// Collects the events of the first `stepLimit` steps (and at most `limit` events), and returns them in
/// (time, priority, insertion) order.
public struct EventLog: EventSink {
    public static var isEnabled: Bool { true }
    private var queue = EventQueue()
    public let limit: Int
    public let stepLimit: Int
    private var closed = false
    /// Whether events were dropped because `limit` was reached (views built from the log would be incomplete).
    public private(set) var truncated = false

    public init(limit: Int = 5_000_000, stepLimit: Int = .max) {
        self.limit = limit
        self.stepLimit = stepLimit
    }

    public mutating func record(_ event: SimEvent, at nanoseconds: Int64) {
        if case let .layerStart(step, _) = event, step >= stepLimit { closed = true }
        guard !closed else { return }
        if queue.count < limit { queue.schedule(event, at: SimTime(nanoseconds: nanoseconds)) } else { truncated = true }
    }

    /// Every recorded event, earliest first; empties the log.
    public mutating func drain() -> [ScheduledEvent] {
        var ordered: [ScheduledEvent] = []
        while let next = queue.popNext() { ordered.append(next) }
        return ordered
    }
}
