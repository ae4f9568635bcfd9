/// The link with several copy engines: copies under way share its bandwidth equally (processor sharing), simulated
/// event by event (a set-up ending, a transfer finishing) only as far as the engine asks.
extension Link {
    /// Runs events in time order until `limit` (landings at `limit` included; starts only before it, except when
    /// running to a landing) or until `stop` has landed.
    func runShared(until limit: Int64, stopAt stop: Ticket) {
        while true {
            if stop >= 0 && endOf[Int(stop)] >= 0 { return }
            if clock < limit { fillShared() }
            if active.count == 0 {
                // Idle: jump to the next copy issued later (a streamed copy waits for the room it takes), if any.
                var issue = Int64.max
                for t in demands.elements where afterOf[Int(t)] < 0 { issue = min(issue, issuedAt[Int(t)]) }
                if let t = prefetches.firstTicket { issue = min(issue, issuedAt[Int(t)]) }
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

    /// Starts queued copies on free engines at the clock: demand copies first (those whose memory is free), then
    /// prefetches, each in issue order.
    func fillShared() {
        while active.count < engines {
            var chosen: Ticket = -1
            for t in demands.elements where afterOf[Int(t)] < 0 && issuedAt[Int(t)] <= clock { chosen = t; break }
            if chosen >= 0 { demands.remove(chosen) } else {
                guard let t = prefetches.firstTicket, issuedAt[Int(t)] <= clock else { return }
                prefetches.removeFirst()
                chosen = t
            }
            startOf[Int(chosen)] = clock
            remaining[Int(chosen)] = latency > 0 ? .nan : Double(durationOf[Int(chosen)])
            active.append(chosen)
            started.append(chosen)
        }
    }

    /// When the next engine frees if nothing joins the copies under way.
    func nextFreeEngine() -> Int64 {
        if active.count < engines { return clock }
        let sharing = transferring()
        var soonest = Int64.max
        for i in 0..<active.count {
            let t = active[i]
            // A copy in set-up frees its engine after the set-up and its whole transfer at the current sharing.
            let end = remaining[Int(t)].isNaN
                ? startOf[Int(t)] + latency + Int64((Double(durationOf[Int(t)] - latency) * Double(sharing + 1)).rounded(.up))
                : clock + Int64((remaining[Int(t)] * Double(max(1, sharing))).rounded(.up))
            soonest = min(soonest, end)
        }
        return soonest
    }

    /// Copies under way in their transfer phase.
    @inline(__always) private func transferring() -> Int {
        var n = 0
        for i in 0..<active.count where !remaining[Int(active[i])].isNaN { n += 1 }
        return n
    }

    /// The time of `t`'s next event: the end of its set-up, or of its transfer at the current sharing.
    @inline(__always) private func eventTime(_ t: Ticket, sharing: Int) -> Int64 {
        remaining[Int(t)].isNaN ? startOf[Int(t)] + latency
                                : clock + Int64((remaining[Int(t)] * Double(sharing)).rounded(.up))
    }

    /// Advances the clock to `time`, each transfer progressing at 1/`sharing` of the link's rate.
    private func progress(to time: Int64, sharing: Int) {
        guard time > clock else { return }
        if sharing > 0 {
            let share = Double(time - clock) / Double(sharing)
            for i in 0..<active.count where !remaining[Int(active[i])].isNaN { remaining[Int(active[i])] -= share }
        }
        if active.count > 0 { busyNanoseconds += time - clock }
        clock = time
    }

    /// At `time`: set-ups that end begin transferring; transfers with nothing left land (a remainder below a
    /// millionth of a nanosecond is rounding).
    private func settle(at time: Int64) {
        var i = 0
        while i < active.count {
            let t = active[i]
            if remaining[Int(t)].isNaN && startOf[Int(t)] + latency <= time {
                remaining[Int(t)] = Double(durationOf[Int(t)] - latency)
            }
            if !remaining[Int(t)].isNaN && remaining[Int(t)] <= 1e-6 {
                endOf[Int(t)] = time
                active[i] = active[active.count - 1]
                active.removeLast()
                landed.append(t)
                for q in demands.elements where afterOf[Int(q)] == t { afterOf[Int(q)] = -1 }
                continue
            }
            i += 1
        }
    }
}
