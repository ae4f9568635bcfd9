/// A link that copies experts into GPU memory: up to `servers` copies at once, sharing its bandwidth equally
/// (processor sharing), so a lone copy always gets the whole link and idle servers never slow it
/// (docs/simulation.md, "Link"). A server is a copy engine (host to GPU), or a drive's queue slot.
///
///     let link = Link(servers: 2, latency: 10_000)
///     link.advance(to: gate)
///     let t = link.send(expert: 5, duration: 14_000_000, at: gate)
///     ... every other copy of the gate sent ...
///     let lands = link.landing(of: t)
///     link.release(t)
///
/// One model, one life cycle for every copy: a prefetch is *queued* (it may still be cancelled); a copy that must go
/// (a demand copy, or a prefetch a gate has asked for) is *committed*: committed copies start before queued
/// prefetches, in the order they were committed, and never before the copies whose memory they take (`after`) have
/// landed; then it is *under way* (a set-up of `latency` ns, then its transfer) until it *lands*. A copy under way is
/// never pre-empted, and no copy starts before the time the link has been advanced to.
///
/// With one server nothing can share a copy's transfer, so each copy's start and landing are fixed the moment the
/// copy is certain to go next (committed, or reached by the server while the link advances): a closed form of the
/// same model, which a test checks against the event simulation run with one server. With several, a landing
/// depends on the copies that join later, so the link simulates itself forward event by event, only as far as it is
/// asked (`advance`, `landing`: Link+Sharing.swift).
///
/// Every copy has a ticket, which its holder gives back with `release` once it needs neither the copy's times nor
/// to name it; the link recycles it as soon as it is also done with the copy (landed, or cancelled). A link that
/// reports (`Reporting`) lists what started and landed since the holder last called `drained()`, by value and in
/// order, in `reports`; the holder drains them after every call that can report, and before asking for a new ticket
/// (checked), so no report it reads names a ticket already reissued.
public final class Link {
    public typealias Ticket = Int32

    /// A committed copy, as its holder keeps it: opaque; ask `landing(of:)`, give it back with `release`. A demand copy
    /// on one server is fixed when sent and needs no record: the handle carries its landing.
    public struct Copy {
        let ticket: Ticket
        let fixedLanding: Int64
        init(ticket: Ticket) { self.ticket = ticket; fixedLanding = -1 }
        init(landing: Int64) { ticket = -1; fixedLanding = landing }
    }

    /// A copy that started (`start`), landed (`end`), or both when both are known at once (one server): reported
    /// by value, so that a report outlives its ticket (-1 for a demand copy on one server). -1: not in this report.
    public struct Report {
        public let ticket: Ticket
        public let expert: Int32
        public let start: Int64
        public let end: Int64
    }

    /// Copies on the link at once.
    public let servers: Int
    /// Set-up time of every copy (ns): the link is busy but moves no bytes.
    public let latency: Int64
    /// How far the link has been simulated (ns): no copy starts before it.
    public internal(set) var clock: Int64 = 0
    /// Whether one server uses the closed form (false only in the test that checks it against the simulation).
    let fixesAtCommit: Bool
    /// Which starts and landings are listed in `reports`.
    public enum Reporting {
        /// None: nobody reads them.
        case none
        /// Those of copies with a ticket (prefetches, and every copy on several servers): a prefetch book's.
        case tickets
        /// Every copy's, for a timeline.
        case all
    }
    public let reporting: Reporting

    /// One server: when the last copy fixed on it lands, and Σ of those copies' durations.
    var freeAt: Int64 = 0
    var fixedBusy: Int64 = 0
    /// Several servers: nanoseconds up to `clock` with at least one copy on the link.
    var sharedBusy: Int64 = 0

    // Per ticket: one record each, so that a copy's life touches one place.
    var capacity = 0
    var copies = UnsafeMutablePointer<CopyRecord>.allocate(capacity: 0)
    var freeTickets = ExpertList(capacity: 64)

    /// Several servers: copies under way. Both: committed copies not started, and queued prefetches, in order.
    var active = ExpertList(capacity: 8)
    var committed = TicketQueue()
    var prefetches = TicketQueue()
    public internal(set) var reports = ReportList()

    public init(servers: Int, latency: Int64, reporting: Reporting = .none) {
        self.servers = max(1, servers)
        self.latency = max(0, latency)
        self.reporting = reporting
        fixesAtCommit = true
        growTickets()
    }

    /// A link that simulates one server event by event instead of in closed form (the test that checks the two).
    init(eventSimulatedServers servers: Int, latency: Int64) {
        self.servers = max(1, servers)
        self.latency = max(0, latency)
        reporting = .none
        fixesAtCommit = false
        growTickets()
    }

    deinit {
        copies.deallocate()
        freeTickets.deallocate(); active.deallocate()
        committed.deallocate(); prefetches.deallocate(); reports.deallocate()
    }

    /// Whether one server's copies are fixed in closed form.
    @inline(__always) var isClosedForm: Bool { servers == 1 && fixesAtCommit }

    @inline(__always) public func expert(of t: Ticket) -> Int32 { copies[Int(t)].expert }
    /// When `t` started, or -1 while it has not.
    @inline(__always) public func start(of t: Ticket) -> Int64 { copies[Int(t)].start }
    /// When `t` lands, or -1 while that is not known.
    @inline(__always) public func end(of t: Ticket) -> Int64 { copies[Int(t)].end }
    /// The queued prefetches, in the order they will start.
    public var queuedPrefetches: UnsafeBufferPointer<Int32> { prefetches.elements }

    // MARK: Copies

    /// Sends a copy that must go (a demand copy), issued at `time`: it starts after the copies committed before it,
    /// ahead of every queued prefetch, and not before the copies in `after` (evicted while still arriving: their
    /// bytes cannot be unsent) have landed. The link takes over `after`'s tickets.
    @inline(__always)
    public func send(expert e: Int32, duration: Int64, at time: Int64,
                     after: UnsafeBufferPointer<Ticket> = UnsafeBufferPointer(start: nil, count: 0)) -> Copy {
        if isClosedForm && after.isEmpty {  // next on the server: fixed now, no record kept (the replay's common path)
            let start = max(time, freeAt, clock), length = max(duration, latency)
            freeAt = start + length
            fixedBusy += length
            if reporting == .all { reports.append(Report(ticket: -1, expert: e, start: start, end: freeAt)) }
            return Copy(landing: freeAt)
        }
        return send(expert: e, duration: duration, notBefore: time, after: after)
    }

    /// `send`'s general path: copies to wait for, or several servers.
    @inline(never)
    private func send(expert e: Int32, duration: Int64, notBefore time: Int64, after: UnsafeBufferPointer<Ticket>) -> Copy {
        var notBefore = time
        for a in after where copies[Int(a)].done { notBefore = max(notBefore, copies[Int(a)].end) }  // landed (one server: fixed)
        if isClosedForm {
            for a in after { release(a) }
            return send(expert: e, duration: duration, at: notBefore)
        }
        let t = ticket(e, duration: duration, at: notBefore)
        for a in after {
            if copies[Int(a)].done { release(a) } else { copies[Int(a)].waiter = t; copies[Int(t)].waitsFor += 1 }
        }
        committed.append(t)
        if clock >= copies[Int(t)].issuedAt { fillShared() }
        return Copy(ticket: t)
    }

    /// Queues a prefetch issued at `time` behind the committed copies; it starts when a server is free.
    @inline(__always)
    public func queuePrefetch(expert e: Int32, duration: Int64, at time: Int64) -> Ticket {
        let t = ticket(e, duration: duration, at: time)
        prefetches.append(t)
        return t
    }

    /// Commits queued prefetch `t` at `time` (a gate asked for it): it joins the committed copies, behind those
    /// committed before it and ahead of the other queued prefetches; reported like any copy (its holder learns its
    /// landing from the report).
    @inline(__always)
    public func commit(_ t: Ticket, at time: Int64) { commit(t, at: time, reported: reporting != .none) }

    /// `commit`, with one server's report listed only if `reported` (several servers report from the simulation).
    @inline(__always)
    private func commit(_ t: Ticket, at time: Int64, reported: Bool) {
        precondition(prefetches.remove(t), "committed a copy that is not a queued prefetch")
        copies[Int(t)].issuedAt = max(copies[Int(t)].issuedAt, time)
        if isClosedForm {
            fix(t, start: max(copies[Int(t)].issuedAt, freeAt, clock), reported: reported)
        } else {
            committed.append(t)
            if clock >= copies[Int(t)].issuedAt { fillShared() }
        }
    }

    /// Commits, in their order and at `time`, the queued prefetches ahead of `t` (a predictor whose copies keep their
    /// order: MoE-Prefetch), as `commit` does for each, and hands each one's ticket, expert and landing to `sent`
    /// (-1 where the landing is not known yet: several servers). With one server no report is listed for them but
    /// a timeline's (`Reporting.all`): the caller has just learnt what the report would say.
    @inline(__always)
    public func commitAhead(of t: Ticket, at time: Int64, _ sent: (Ticket, Int32, Int64) -> Void) {
        guard isClosedForm else {
            while let ahead = prefetches.firstTicket, ahead != t {
                commit(ahead, at: time, reported: false)
                sent(ahead, copies[Int(ahead)].expert, copies[Int(ahead)].end)
            }
            return
        }
        // `commit` for each, the queue's head taken off once at the end.
        let queued = prefetches.elements
        var k = 0
        while k < queued.count && queued[k] != t {
            let ahead = queued[k]
            copies[Int(ahead)].issuedAt = max(copies[Int(ahead)].issuedAt, time)
            fix(ahead, start: max(copies[Int(ahead)].issuedAt, freeAt, clock), reported: reporting == .all)
            sent(ahead, copies[Int(ahead)].expert, copies[Int(ahead)].end)
            k += 1
        }
        prefetches.removeFirst(k)
    }

    /// Commits queued prefetch `t` as `commit` does and takes over its ticket: the caller holds the returned handle
    /// instead (a gate that waits for the copy, and has settled it), so only a timeline hears of it.
    @inline(__always)
    public func commitTakingOver(_ t: Ticket, at time: Int64) -> Copy {
        guard isClosedForm else {
            commit(t, at: time)
            return Copy(ticket: t)
        }
        precondition(prefetches.remove(t), "committed a copy that is not a queued prefetch")
        let start = max(copies[Int(t)].issuedAt, time, freeAt, clock)
        freeAt = start + copies[Int(t)].duration
        fixedBusy += copies[Int(t)].duration
        if reporting == .all { reports.append(Report(ticket: t, expert: copies[Int(t)].expert, start: start, end: freeAt)) }
        freeTickets.append(t)
        return Copy(landing: freeAt)
    }

    /// Drops queued prefetch `t` (it never started); its holder still releases the ticket.
    @inline(__always) public func cancel(_ t: Ticket) {
        precondition(prefetches.remove(t), "cancelled a copy that is not a queued prefetch")
        finished(t)
    }

    /// The holder of `copy` no longer needs it.
    @inline(__always) public func release(_ copy: Copy) {
        if copy.ticket >= 0 { release(copy.ticket) }
    }

    /// The holder of `t` no longer needs it.
    @inline(__always) public func release(_ t: Ticket) {
        copies[Int(t)].released = true
        if copies[Int(t)].done { recycle(t) }
    }

    /// Forgets the reports (the holder has handled them).
    @inline(__always) public func drained() { reports.removeAll() }

    /// Simulates the link up to `time`: copies landing at or before it land, queued copies start only before it (a
    /// copy sent at `time` is sent after this, and goes first if it is committed).
    @inline(__always)
    public func advance(to time: Int64) {
        advance(to: time) { reports.append($0) }
    }

    /// `advance`, handing each report to `account` as it is made (with one server, where the reports are prefetches
    /// reached by the server, the list is skipped), then those the simulation listed; the list is left empty.
    @inline(__always)
    public func advance(to time: Int64, account: (Report) -> Void) {
        if isClosedForm {
            while let t = prefetches.firstTicket {
                let start = max(copies[Int(t)].issuedAt, freeAt, clock)
                guard start < time else { break }
                prefetches.removeFirst()
                fix(t, start: start, reported: false)
                if reporting != .none { account(Report(ticket: t, expert: copies[Int(t)].expert, start: start, end: freeAt)) }
            }
        } else {
            runShared(until: time, stopAt: -1)
            for r in reports.elements { account(r) }
            reports.removeAll()
        }
        clock = max(clock, time)
    }

    /// When committed copy `t` lands: the link is simulated until it does. Call once every copy that can still
    /// share the link with it has been sent (with one server its landing is known from its commit).
    @inline(__always)
    public func landing(of copy: Copy) -> Int64 {
        copy.ticket < 0 ? copy.fixedLanding : landing(of: copy.ticket)
    }

    /// The handle for ticket `t`, which the caller holds: once the link has fixed its landing, a handle carrying it
    /// (and the ticket is released); otherwise the ticket, to ask later.
    @inline(__always)
    public func handle(_ t: Ticket) -> Copy {
        guard copies[Int(t)].done && copies[Int(t)].end >= 0 else { return Copy(ticket: t) }
        let end = copies[Int(t)].end
        release(t)
        return Copy(landing: end)
    }

    /// When committed copy `t` lands (as `landing(of:)` for a handle).
    @inline(__always)
    public func landing(of t: Ticket) -> Int64 {
        if copies[Int(t)].end < 0 { runShared(until: .max, stopAt: t) }
        return copies[Int(t)].end
    }

    /// When a copy sent now, at `time`, would start if nothing else were sent: exact with one server; with several,
    /// the next landing if nothing joins (an estimate for miss handlers).
    public func earliestStart(after time: Int64) -> Int64 {
        isClosedForm ? max(time, freeAt, clock) : max(time, nextFreeServer())
    }

    /// Nanoseconds in [0, `time`] with at least one copy on the link, at the end of a run: every copy was issued at
    /// or before `time`, and the link has not been simulated past it.
    public func busyNanoseconds(until time: Int64) -> Int64 {
        precondition(clock <= time, "the link was simulated past the time its busy time is asked for")
        if isClosedForm {
            // Every copy was issued by `time`, so those still on the server after it run back to back from the one
            // under way at `time`: one stretch to cut.
            return fixedBusy - max(0, freeAt - time)
        }
        runShared(until: time, stopAt: -1)
        return sharedBusy
    }

    // MARK: Internals

    /// One server: `t` takes the server from `start` for its whole duration; reported (started and landed) if
    /// `reported`.
    @inline(__always) private func fix(_ t: Ticket, start: Int64, reported: Bool) {
        copies[Int(t)].start = start
        freeAt = start + copies[Int(t)].duration
        copies[Int(t)].end = freeAt
        fixedBusy += copies[Int(t)].duration
        if reported { reports.append(Report(ticket: t, expert: copies[Int(t)].expert, start: start, end: freeAt)) }
        copies[Int(t)].done = true
    }

    /// The link is done with `t` (it landed, or was cancelled).
    @inline(__always) func finished(_ t: Ticket) {
        copies[Int(t)].done = true
        if copies[Int(t)].released { recycle(t) }
    }

    /// `t` is both done and released: free for reuse.
    @inline(__always) private func recycle(_ t: Ticket) { freeTickets.append(t) }

    /// A ticket for a copy issued at `time`.
    @inline(__always)
    func ticket(_ e: Int32, duration: Int64, at time: Int64) -> Ticket {
        let t = freshTicket()
        copies[Int(t)] = CopyRecord(issuedAt: time, duration: max(duration, latency), start: -1, end: -1, remainingPs: -1,
                                    expert: e, waitsFor: 0, waiter: -1, done: false, released: false)
        return t
    }

    @inline(__always) func freshTicket() -> Ticket {
        precondition(reports.count == 0, "a ticket asked for before the link's reports were drained")
        if freeTickets.isEmpty { growTickets() }
        let t = freeTickets[freeTickets.count - 1]
        freeTickets.removeLast()
        return t
    }

    private func growTickets() {
        let old = capacity, new = max(64, capacity * 2)
        let grown = UnsafeMutablePointer<CopyRecord>.allocate(capacity: new)
        grown.moveInitialize(from: copies, count: old)
        copies.deallocate()
        copies = grown
        capacity = new
        for t in (old..<new).reversed() { freeTickets.append(Int32(t)) }
    }
}

/// What the link keeps of one ticket's copy.
struct CopyRecord {
    var issuedAt: Int64
    /// The whole copy, set-up included (ns).
    var duration: Int64
    /// When it started and lands; -1 while not known.
    var start: Int64
    var end: Int64
    /// Several servers: transfer left in picoseconds at the whole link's rate; -1 during its set-up.
    var remainingPs: Int64
    var expert: Int32
    /// Several servers: how many copies this one waits for before it starts, and the copy waiting for this one's
    /// landing (-1).
    var waitsFor: Int32
    var waiter: Int32
    /// Whether the link is done with the ticket (landed or cancelled), and whether its holder released it.
    var done: Bool
    var released: Bool
}

/// Reports of copies that started or landed, in raw memory (appended per copy in the replay loop).
public struct ReportList {
    private var base = UnsafeMutablePointer<Link.Report>.allocate(capacity: 16)
    private var capacity = 16
    public private(set) var count = 0

    func deallocate() { base.deallocate() }

    public var elements: UnsafeBufferPointer<Link.Report> { UnsafeBufferPointer(start: base, count: count) }

    @inline(__always) mutating func append(_ r: Link.Report) {
        if count == capacity {
            let bigger = UnsafeMutablePointer<Link.Report>.allocate(capacity: capacity * 2)
            bigger.moveInitialize(from: base, count: count)
            base.deallocate()
            base = bigger
            capacity *= 2
        }
        (base + count).initialize(to: r)
        count += 1
    }

    @inline(__always) mutating func removeAll() { count = 0 }
}

/// Copies waiting for a server, in order. Few wait at once (a layer's misses, the predictions queued behind them),
/// so removal from the middle is a short shift.
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

    /// Appends `t` (the space of copies taken off is reclaimed by `removeFirst`'s compaction).
    @inline(__always) mutating func append(_ t: Link.Ticket) { list.append(t) }

    @inline(__always) mutating func removeFirst(_ k: Int = 1) {
        head += k
        if head >= 64 && head * 2 >= list.count { compact() }
    }

    /// Removes `t`; false when it is not waiting.
    @discardableResult @inline(__always) mutating func remove(_ t: Link.Ticket) -> Bool {
        var i = head
        while i < list.count && list[i] != t { i += 1 }
        guard i < list.count else { return false }
        if i == head { removeFirst(); return true }
        while i + 1 < list.count { list[i] = list[i + 1]; i += 1 }
        list.removeLast()
        return true
    }

    /// Moves the live entries to the front.
    private mutating func compact() {
        let live = list.count - head
        for i in 0..<live { list[i] = list[head + i] }
        for _ in 0..<head { list.removeLast() }
        head = 0
    }
}
