/// The host-to-GPU link: up to `engines` copies at once, which share its bandwidth (processor sharing), so a lone
/// copy always gets the whole link and idle engines never slow it (SIMULATION.md, Execution model).
///
///     let link = Link(engines: 2, latency: 10_000)
///     link.advance(to: gate)
///     let copy = link.sendDemand(expert: 5, duration: 14_000_000, at: gate)
///     let lands = copy.end >= 0 ? copy.end : link.landing(of: copy.ticket)
///
/// A copy of `duration` ns alone spends `latency` ns setting up (no bandwidth), then transfers for the rest; while n
/// copies transfer, each progresses at 1/n of the link's rate. Demand copies start before queued prefetches; a copy
/// never starts before it was issued, nor (`after`) before the copy whose memory it takes has landed; a copy under
/// way is not pre-empted. With one engine this is first come, first served, each copy taking exactly `duration`, and
/// every time is known when the copy starts (the fast path the replay loop takes by default). With several, a
/// copy's landing depends on the copies that join it later: the link is simulated forward only when asked
/// (`advance`, `landing`), which the engine does once every copy that can still overlap has been issued
/// (Link+Sharing.swift).
///
/// Prefetches and shared copies get tickets; what started and landed since the last `drained()` is listed in
/// `started` and `landed`. Raw buffers: the replay loop sends a copy per miss.
public final class Link {
    public typealias Ticket = Int32
    /// A copy sent: its ticket (-1 for a demand copy on one engine, which needs none), and its start and landing
    /// (-1 while not known).
    public struct Copy { public let ticket: Ticket; public let start: Int64; public let end: Int64 }

    public let engines: Int
    /// Set-up time of every copy (ns).
    public let latency: Int64
    /// Nanoseconds with at least one copy on the link.
    public internal(set) var busyNanoseconds: Int64 = 0
    /// How far the link has been simulated (ns).
    public internal(set) var clock: Int64 = 0
    /// One engine: when it frees.
    var freeAt: Int64 = 0

    // Per ticket; a ticket is recycled once its copy has landed and been drained, or was cancelled.
    var capacity = 0
    var expertOf = UnsafeMutablePointer<Int32>.allocate(capacity: 0)
    var issuedAt = UnsafeMutablePointer<Int64>.allocate(capacity: 0)
    var durationOf = UnsafeMutablePointer<Int64>.allocate(capacity: 0)
    var startOf = UnsafeMutablePointer<Int64>.allocate(capacity: 0)
    var endOf = UnsafeMutablePointer<Int64>.allocate(capacity: 0)
    /// The ticket whose landing this one waits for, or -1.
    var afterOf = UnsafeMutablePointer<Int32>.allocate(capacity: 0)
    /// Transfer left of a shared copy under way, in ns at the whole link's rate (nan during its set-up).
    var remaining = UnsafeMutablePointer<Double>.allocate(capacity: 0)
    var freeTickets = ExpertList(capacity: 64)
    // Copies under way (several engines), and copies waiting: demand copies first, then prefetches, in issue order.
    var active = ExpertList(capacity: 8)
    var demands = TicketQueue()
    var prefetches = TicketQueue()
    /// Tickets started and landed since the caller last drained them.
    public internal(set) var started = ExpertList(capacity: 64)
    public internal(set) var landed = ExpertList(capacity: 64)

    public init(engines: Int, latency: Int64) {
        self.engines = max(1, engines)
        self.latency = max(0, latency)
        growTickets()
    }

    deinit {
        expertOf.deallocate(); afterOf.deallocate()
        issuedAt.deallocate(); durationOf.deallocate(); startOf.deallocate(); endOf.deallocate()
        remaining.deallocate()
        freeTickets.deallocate(); active.deallocate(); started.deallocate(); landed.deallocate()
        demands.deallocate(); prefetches.deallocate()
    }

    @inline(__always) public func expert(of t: Ticket) -> Int32 { expertOf[Int(t)] }
    @inline(__always) public func start(of t: Ticket) -> Int64 { startOf[Int(t)] }
    /// When `t` lands, or -1 while that is not yet known.
    @inline(__always) public func end(of t: Ticket) -> Int64 { endOf[Int(t)] }
    /// The tickets of the prefetches waiting to start, in issue order.
    public var queuedPrefetches: UnsafeBufferPointer<Int32> { prefetches.elements }

    /// Sends a demand copy issued at `time` (the link advanced to it): it starts on a free engine now, or as soon as
    /// one frees, ahead of every queued prefetch, and not before `after` has landed.
    @inline(__always)
    public func sendDemand(expert e: Int32, duration: Int64, at time: Int64, after: Ticket = -1) -> Copy {
        if engines == 1 {
            let start = max(time, freeAt, after >= 0 ? endOf[Int(after)] : 0)
            freeAt = start + duration
            busyNanoseconds += duration
            return Copy(ticket: -1, start: start, end: freeAt)
        }
        let t = ticket(e, duration: duration, at: time, after: after)
        demands.append(t)
        fillShared()
        return Copy(ticket: t, start: startOf[Int(t)], end: -1)
    }

    /// Queues a prefetch copy issued at `time` behind the demand copies; it starts when an engine is free.
    @inline(__always)
    public func queuePrefetch(expert e: Int32, duration: Int64, at time: Int64) -> Ticket {
        let t = ticket(e, duration: duration, at: time, after: -1)
        prefetches.append(t)
        return t
    }

    /// Sends a queued prefetch now as a demand copy (a gate asked for it before it started).
    @inline(__always)
    public func promote(_ t: Ticket, at time: Int64) -> Copy {
        prefetches.remove(t)
        if engines == 1 {  // a plain demand copy: its times are known at once
            freeTickets.append(t)
            return sendDemand(expert: expertOf[Int(t)], duration: durationOf[Int(t)], at: time)
        }
        demands.append(t)
        fillShared()
        return Copy(ticket: t, start: startOf[Int(t)], end: -1)
    }

    /// Drops a prefetch that has not started.
    @inline(__always) public func cancel(_ t: Ticket) {
        prefetches.remove(t)
        freeTickets.append(t)
    }

    /// Simulates the link up to `time`: copies landing at or before it land, queued copies start only before it (a
    /// copy issued at `time` is sent afterwards and goes first if it is a demand copy).
    @inline(__always)
    public func advance(to time: Int64) {
        if engines == 1 { startQueued(before: time) } else { runShared(until: time, stopAt: -1) }
        clock = max(clock, time)
    }

    /// When `t` lands: the link is simulated until it does. Call once every copy that can overlap it is issued.
    @inline(__always)
    public func landing(of t: Ticket) -> Int64 {
        if endOf[Int(t)] < 0 { runShared(until: .max, stopAt: t) }
        return endOf[Int(t)]
    }

    /// When a copy sent now, not before `time`, would start if nothing else were sent (exact with one engine; with
    /// several, the next landing if nothing joins: an estimate for miss handlers).
    public func earliestStart(after time: Int64) -> Int64 {
        engines == 1 ? max(time, freeAt) : max(time, nextFreeEngine())
    }

    /// Forgets the reported starts and landings (the caller has handled them) and recycles landed tickets.
    @inline(__always) public func drained() {
        started.removeAll()
        for t in landed.elements { freeTickets.append(t) }
        landed.removeAll()
    }

    /// One engine: starts the first queued prefetch if the engine reaches it before `time`, and returns it (its
    /// start and landing are known); the caller recycles it. Nil when none starts.
    @inline(__always) public func startNextQueued(before time: Int64) -> Ticket? {
        guard let t = prefetches.firstTicket else { return nil }
        let start = max(issuedAt[Int(t)], freeAt)
        if start >= time { return nil }
        prefetches.removeFirst()
        startOf[Int(t)] = start
        freeAt = start + durationOf[Int(t)]
        endOf[Int(t)] = freeAt
        busyNanoseconds += durationOf[Int(t)]
        return t
    }

    /// Gives back a ticket whose copy the caller has accounted for.
    @inline(__always) public func recycle(_ t: Ticket) { freeTickets.append(t) }

    /// One engine: starts the queued prefetches the engine reaches before `time`, reporting them as started and landed.
    @inline(__always) private func startQueued(before time: Int64) {
        while let t = startNextQueued(before: time) {
            started.append(t)
            landed.append(t)
        }
    }

    // MARK: Tickets

    @inline(__always)
    func ticket(_ e: Int32, duration: Int64, at time: Int64, after: Ticket) -> Ticket {
        if freeTickets.isEmpty { growTickets() }
        let t = freeTickets[freeTickets.count - 1]
        freeTickets.removeLast()
        expertOf[Int(t)] = e; issuedAt[Int(t)] = time; durationOf[Int(t)] = max(duration, latency)
        startOf[Int(t)] = -1; endOf[Int(t)] = -1; afterOf[Int(t)] = after
        return t
    }

    private func growTickets() {
        let old = capacity, new = max(64, capacity * 2)
        func grown<T>(_ p: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<T> {
            let q = UnsafeMutablePointer<T>.allocate(capacity: new)
            q.moveInitialize(from: p, count: old)
            p.deallocate()
            return q
        }
        expertOf = grown(expertOf); issuedAt = grown(issuedAt); durationOf = grown(durationOf); startOf = grown(startOf)
        endOf = grown(endOf); afterOf = grown(afterOf); remaining = grown(remaining)
        capacity = new
        for t in (old..<new).reversed() { freeTickets.append(Int32(t)) }
    }
}

/// Copies waiting for an engine, in issue order. Few wait at once (a layer's misses, the predictions queued behind
/// them), so removal from the middle is a short shift.
struct TicketQueue {
    private var list = ExpertList(capacity: 16)
    private var head = 0

    func deallocate() { list.deallocate() }

    var isEmpty: Bool { head == list.count }
    var firstTicket: Link.Ticket? { head < list.count ? list[head] : nil }
    var elements: UnsafeBufferPointer<Int32> {
        let all = list.elements
        return UnsafeBufferPointer(start: all.baseAddress.map { $0 + head }, count: all.count - head)
    }

    @inline(__always) mutating func append(_ t: Link.Ticket) {
        if head > 0 && head == list.count { list.removeAll(); head = 0 }
        list.append(t)
    }

    @inline(__always) mutating func removeFirst() {
        head += 1
        if head >= 64 && head * 2 >= list.count { compact() }
    }

    @inline(__always) mutating func remove(_ t: Link.Ticket) {
        var i = head
        while i < list.count && list[i] != t { i += 1 }
        guard i < list.count else { return }
        if i == head { removeFirst(); return }
        while i + 1 < list.count { list[i] = list[i + 1]; i += 1 }
        list.removeLast()
    }

    /// Moves the live entries to the front.
    private mutating func compact() {
        let live = list.count - head
        for i in 0..<live { list[i] = list[head + i] }
        for _ in 0..<head { list.removeLast() }
        head = 0
        _ = live
    }
}
