/// The link simulated event by event (several servers, or one in the test that checks the closed form): copies under
/// way share the bandwidth equally, in integer picoseconds so that every time is exact (docs/simulation.md, "Link").
extension Link {
    /// Work is counted in picoseconds at the whole link's rate.
    static let picosecondsPerNanosecond: Int64 = 1000

    /// The longest copy (ns) whose work in picoseconds, times the copies sharing, fits in 64 bits (about 40 hours
    /// at 64 servers); a run with a longer one is refused before it starts.
    public static func longestCopy(servers: Int) -> Int64 { Int64.max / picosecondsPerNanosecond / Int64(max(1, servers)) }

    /// Runs events in time order until `limit` (landings at `limit` included; starts only before it, except when
    /// running to a landing) or until `stop` has landed.
    func runShared(until limit: Int64, stopAt stop: Ticket) {
        while true {
            if stop >= 0 && copies[Int(stop)].end >= 0 { return }
            if clock < limit { fillShared() }
            if active.count == 0 {
                // Idle: jump to the next copy issued later, if any.
                var issue = Int64.max
                for t in committed.elements where copies[Int(t)].waitsFor == 0 { issue = min(issue, copies[Int(t)].issuedAt) }
                if let t = prefetches.firstTicket { issue = min(issue, copies[Int(t)].issuedAt) }
                guard issue < limit, issue > clock else {
                    precondition(stop < 0, "waiting for a copy that is neither under way nor queued")
                    return
                }
                clock = issue
                continue
            }
            let sharing = transferring()
            var next = Int64.max
            for i in 0..<active.count { next = min(next, eventTime(active[i], sharing: sharing)) }
            if next > limit {
                progress(to: limit, sharing: sharing)
                return
            }
            progress(to: next, sharing: sharing)
            settle(at: next)
        }
    }

    /// Starts waiting copies on free servers at the clock: committed copies first (those whose `after` copies have
    /// landed, in commit order), then queued prefetches, in issue order.
    func fillShared() {
        while active.count < servers {
            var chosen: Ticket = -1
            for t in committed.elements where copies[Int(t)].waitsFor == 0 && copies[Int(t)].issuedAt <= clock { chosen = t; break }
            if chosen >= 0 { committed.remove(chosen) } else {
                guard let t = prefetches.firstTicket, copies[Int(t)].issuedAt <= clock else { return }
                prefetches.removeFirst()
                chosen = t
            }
            copies[Int(chosen)].start = clock
            copies[Int(chosen)].remainingPs = latency > 0 ? -1 : transferPs(chosen)
            active.append(chosen)
            if reporting != .none { reports.append(Report(ticket: chosen, expert: copies[Int(chosen)].expert, start: clock, end: -1)) }
        }
    }

    /// When the next server frees if nothing joins the copies under way.
    func nextFreeServer() -> Int64 {
        if active.count < servers { return clock }
        let sharing = transferring()
        var soonest = Int64.max
        for i in 0..<active.count {
            let t = active[i]
            // A copy in set-up frees its server after the set-up and its whole transfer at one more sharer.
            let end = copies[Int(t)].remainingPs < 0
                ? copies[Int(t)].start + latency + Self.nanoseconds(transferPs(t), sharing: sharing + 1)
                : clock + Self.nanoseconds(copies[Int(t)].remainingPs, sharing: max(1, sharing))
            soonest = min(soonest, end)
        }
        return soonest
    }

    /// The whole transfer of `t` in picoseconds.
    @inline(__always) private func transferPs(_ t: Ticket) -> Int64 {
        (copies[Int(t)].duration - latency) * Self.picosecondsPerNanosecond
    }

    /// Nanoseconds until `ps` of work is done while `sharing` copies transfer: ⌈ps · sharing / 1000⌉.
    @inline(__always) static func nanoseconds(_ ps: Int64, sharing: Int) -> Int64 {
        let (q, r) = (ps * Int64(sharing)).quotientAndRemainder(dividingBy: picosecondsPerNanosecond)
        return r > 0 ? q + 1 : q
    }

    /// Copies under way in their transfer phase.
    @inline(__always) private func transferring() -> Int {
        var n = 0
        for i in 0..<active.count where copies[Int(active[i])].remainingPs >= 0 { n += 1 }
        return n
    }

    /// The time of `t`'s next event: the end of its set-up, or of its transfer at the current sharing.
    @inline(__always) private func eventTime(_ t: Ticket, sharing: Int) -> Int64 {
        copies[Int(t)].remainingPs < 0 ? copies[Int(t)].start + latency : clock + Self.nanoseconds(copies[Int(t)].remainingPs, sharing: sharing)
    }

    /// Advances the clock to `time`: each transfer moves ⌊1000 · Δ / sharing⌋ ps.
    private func progress(to time: Int64, sharing: Int) {
        guard time > clock else { return }
        let elapsed = time - clock
        if sharing > 0 {
            // Past Int64.max / 1000 ns of progress every transfer has ended long before: cap instead of overflowing.
            let share = elapsed > Int64.max / Self.picosecondsPerNanosecond
                ? Int64.max : elapsed * Self.picosecondsPerNanosecond / Int64(sharing)
            for i in 0..<active.count where copies[Int(active[i])].remainingPs >= 0 {
                copies[Int(active[i])].remainingPs = max(0, copies[Int(active[i])].remainingPs - share)
            }
        }
        if active.count > 0 { sharedBusy += elapsed }
        clock = time
    }

    /// At `time`: set-ups that end begin transferring; transfers with nothing left land.
    private func settle(at time: Int64) {
        var i = 0
        while i < active.count {
            let t = active[i]
            if copies[Int(t)].remainingPs < 0 && copies[Int(t)].start + latency <= time { copies[Int(t)].remainingPs = transferPs(t) }
            if copies[Int(t)].remainingPs == 0 {
                copies[Int(t)].end = time
                active[i] = active[active.count - 1]
                active.removeLast()
                if reporting != .none { reports.append(Report(ticket: t, expert: copies[Int(t)].expert, start: -1, end: time)) }
                finished(t)
                if copies[Int(t)].waiter >= 0 {  // the copy that took its memory may start; the link held its ticket
                    copies[Int(copies[Int(t)].waiter)].waitsFor -= 1
                    copies[Int(t)].waiter = -1
                    release(t)
                }
                continue
            }
            i += 1
        }
    }
}
