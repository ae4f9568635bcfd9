import Foundation
import Testing
@testable import MoESim

/// The link as a resource (processor sharing among copy engines), driven without an engine, and the engine's use of
/// it: hand-worked times, and properties over seeds.
@Suite struct LinkTests {
    @Test func twoCopiesShareTheBandwidthAndALoneOneGetsItAll() {
        // 10 ns set-up; transfers of 100 and 300 ns at the whole link's rate.
        let link = Link(servers: 2, latency: 10)
        let a = link.send(expert: 0, duration: 110, at: 0), b = link.send(expert: 1, duration: 310, at: 0)
        // Both transfer from 10 at half rate: a's 100 ns take 200 (lands 210), b has 200 left alone: lands 410.
        #expect(link.landing(of: b) == 410)
        #expect(link.end(of: a.ticket) == 210)
        link.advance(to: 1000)
        let c = link.send(expert: 2, duration: 110, at: 1000)
        #expect(link.landing(of: c) == 1110, "alone again: its own duration")
        #expect(link.busyNanoseconds(until: 2000) == 410 + 110, "set-up counts as busy")
    }

    /// Three copies on three servers, 0 ns set-up: transfers of 100, 101 and 3 ns. In picoseconds each moves
    /// ⌊1000·Δ/n⌋: the 3 ns copy lands at ⌈3000·3/1000⌉ = 9, when each has moved 3,000 ps; 97,000 and 98,000 ps
    /// are left, shared by two: ⌈97,000·2/1000⌉ = 194 ns later (203), when the other has 1,000 ps left alone: 204.
    @Test func sharedTransfersAreCountedInWholePicosecondsAndEventsFallOnWholeNanoseconds() {
        let link = Link(servers: 3, latency: 0)
        let a = link.send(expert: 0, duration: 100, at: 0), b = link.send(expert: 1, duration: 101, at: 0)
        let c = link.send(expert: 2, duration: 3, at: 0)
        #expect(link.landing(of: b) == 204)
        #expect(link.end(of: c.ticket) == 9 && link.end(of: a.ticket) == 203)
        // Two copies of 1 ns shared by three: ⌈1000·3/1000⌉ = 3 ns, each moving ⌊1000·3/3⌋ = 1000 ps: both land at 3.
        let three = Link(servers: 3, latency: 0)
        let x = three.send(expert: 0, duration: 1, at: 0), y = three.send(expert: 1, duration: 1, at: 0)
        let z = three.send(expert: 2, duration: 1, at: 0)
        #expect([x, y, z].map { three.landing(of: $0) } == [3, 3, 3])
    }

    @Test func committedCopiesGoBeforeQueuedPrefetchesAndWaitForTheMemoryTheyTake() {
        let link = Link(servers: 2, latency: 0)
        let p1 = link.queuePrefetch(expert: 10, duration: 100, at: 0)
        let p2 = link.queuePrefetch(expert: 11, duration: 100, at: 0)
        link.advance(to: 1)  // both prefetches start at 0 on the two servers
        #expect(link.start(of: p1) == 0 && link.start(of: p2) == 0)
        let p3 = link.queuePrefetch(expert: 12, duration: 100, at: 1)
        // A demand copy that evicted p1 (still arriving) may not start before p1 lands, though a server frees then,
        // and it goes before p3, queued earlier.
        // p1 and p2 share the link: both land at 200, when d (which waited for p1) and p3 start and share it.
        let d = [p1].withUnsafeBufferPointer { link.send(expert: 5, duration: 100, at: 1, after: $0) }
        #expect(link.landing(of: d) == 400)
        #expect(link.end(of: p1) == 200 && link.start(of: d.ticket) == 200 && link.start(of: p3) == 200)
        // One server frees at a time: the committed copy goes first, though p5 was queued before it.
        let shared = Link(servers: 2, latency: 0)
        let long = shared.send(expert: 0, duration: 1000, at: 0), short = shared.send(expert: 1, duration: 10, at: 0)
        let p5 = shared.queuePrefetch(expert: 5, duration: 10, at: 0)
        let urgent = shared.send(expert: 6, duration: 10, at: 0)
        _ = shared.landing(of: urgent)
        #expect(shared.end(of: short.ticket) == 20 && shared.start(of: urgent.ticket) == 20)
        #expect(shared.landing(of: p5) > shared.end(of: urgent.ticket))
        #expect(shared.landing(of: long) > 1000)
        // One server, the same rules: a commit goes ahead of an earlier queued prefetch.
        let one = Link(servers: 1, latency: 0)
        let q = one.queuePrefetch(expert: 1, duration: 50, at: 0)
        let demand = one.send(expert: 2, duration: 50, at: 0)
        #expect(one.landing(of: demand) == 50, "fixed when sent: no ticket kept")
        one.advance(to: 1000)
        #expect(one.start(of: q) == 50 && one.end(of: q) == 100)
    }

    @Test func aCommittedPrefetchLeavesTheQueueAndACancelledOneNeverStarts() {
        for servers in [1, 3] {
            let link = Link(servers: servers, latency: 0)
            let busy = link.send(expert: 0, duration: 100, at: 0)
            let p = [link.queuePrefetch(expert: 1, duration: 10, at: 0), link.queuePrefetch(expert: 2, duration: 10, at: 0),
                     link.queuePrefetch(expert: 3, duration: 10, at: 0)]
            if servers == 1 {
                link.commit(p[2], at: 0)  // ahead of p[0] and p[1]
                link.cancel(p[1])
                #expect(link.start(of: p[2]) == 100 && link.landing(of: p[2]) == 110)
                link.advance(to: 1000)
                #expect(link.start(of: p[0]) == 110 && link.start(of: p[1]) == -1 && link.landing(of: busy) == 100)
            } else {
                #expect(link.landing(of: p[2]) >= 0, "three servers: every copy starts at once")
            }
            #expect(link.queuedPrefetches.isEmpty)
        }
    }

    /// A run that ends while copies are still on the link counts only the busy time before its end: 0–100 and
    /// 150–300 of copies that run to 400 (one server), or 0–300 with a copy sharing the link until 500 (two).
    @Test func busyTimeStopsAtTheEndOfTheRun() {
        let one = Link(servers: 1, latency: 0)
        _ = one.send(expert: 0, duration: 100, at: 0)
        one.advance(to: 150)
        _ = one.send(expert: 1, duration: 200, at: 150)
        _ = one.send(expert: 2, duration: 50, at: 150)
        #expect(one.busyNanoseconds(until: 300) == 100 + 150)
        let two = Link(servers: 2, latency: 0)
        _ = two.send(expert: 0, duration: 100, at: 0)
        _ = two.send(expert: 1, duration: 400, at: 0)
        #expect(two.busyNanoseconds(until: 300) == 300)
    }

    /// A ticket is recycled only once its holder released it and the link is done with it.
    @Test func aTicketIsReusedOnlyAfterItsHolderReleasedItAndItLanded() {
        let link = Link(servers: 2, latency: 0)
        let a = link.send(expert: 0, duration: 100, at: 0)
        link.release(a)
        link.drained()
        let b = link.send(expert: 1, duration: 100, at: 0)
        #expect(b.ticket != a.ticket, "a is still on the link")
        _ = link.landing(of: a)
        link.drained()
        #expect(link.send(expert: 2, duration: 1, at: 100).ticket == a.ticket, "landed and released: recycled")
    }

    /// Random copies on a random link: each starts no earlier than issued, lands no earlier than its duration after
    /// its start, no more than `servers` are on the link at once, the clock never goes back, and busy time is the
    /// measure of the union of the copies' intervals.
    @Test(arguments: Array(UInt64(1)...24))
    func theLinkKeepsItsRules(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let servers = 1 + rng.nextInt(below: 4)
        let link = Link(servers: servers, latency: Int64(rng.nextInt(below: 20)))
        var copies: [(copy: Link.Copy, issued: Int64, duration: Int64)] = []
        var now: Int64 = 0, lastClock: Int64 = 0
        for _ in 0..<60 {
            now += Int64(rng.nextInt(below: 200))
            link.advance(to: now)
            #expect(link.clock >= lastClock)
            lastClock = link.clock
            let duration = Int64(20 + rng.nextInt(below: 300))
            copies.append(rng.nextInt(below: 2) == 0
                ? (Link.Copy(ticket: link.queuePrefetch(expert: Int32(copies.count), duration: duration, at: now)), now, duration)
                : (link.send(expert: Int32(copies.count), duration: duration, at: now), now, duration))
        }
        link.advance(to: .max / 4)  // tickets are not released here, so none is recycled before it is checked
        var intervals: [(Int64, Int64)] = []
        for c in copies {
            let end = link.landing(of: c.copy)
            // A demand copy on one server keeps no record: it ran alone, for its whole duration.
            let start = c.copy.ticket >= 0 ? link.start(of: c.copy.ticket) : end - max(c.duration, link.latency)
            #expect(start >= c.issued && end >= start + c.duration, "a copy never lands before its lone duration")
            intervals.append((start, end))
        }
        for (s, _) in intervals { #expect(intervals.filter { $0.0 <= s && s < $0.1 }.count <= servers) }
        #expect(link.busyNanoseconds(until: .max / 4) == Self.unionLength(intervals, until: .max / 4))
    }

    /// The measure of the union of `intervals` within [0, `end`].
    static func unionLength(_ intervals: [(Int64, Int64)], until end: Int64) -> Int64 {
        var total: Int64 = 0, reach: Int64 = 0
        for (s, e) in intervals.sorted(by: { $0.0 < $1.0 }) {
            let from = max(s, reach), to = min(e, end)
            if to > from { total += to - from }
            reach = max(reach, e)
        }
        return total
    }

    /// One model: the one-server closed form gives every copy the same start and landing as the event simulation
    /// run with one server, for random mixes of demand copies, prefetches, commits, cancellations and copies that
    /// wait for evicted prefetches still arriving. (Demand copies take no ticket in closed form, so each link's
    /// handles are kept side by side.)
    @Test(arguments: Array(UInt64(1)...40))
    func oneServerInClosedFormEqualsTheEventSimulation(seed: UInt64) {
        var seeded = SplitMix64(seed: seed)
        let latency = Int64(seeded.nextInt(below: 30))
        let closed = Link(servers: 1, latency: latency), simulated = Link(eventSimulatedServers: 1, latency: latency)
        var rng = SplitMix64(seed: seed &+ 1000)
        var now: Int64 = 0
        // Prefetches as (closed ticket, simulated ticket); committed copies as handles of both.
        var queued: [(Link.Ticket, Link.Ticket)] = [], committed: [(Link.Ticket, Link.Ticket)] = []
        var prefetches: [(Link.Ticket, Link.Ticket)] = [], sent: [(Link.Copy, Link.Copy)] = []
        for n in 0..<80 {
            let roll = rng.nextInt(below: 10)
            if roll < 2 { now += Int64(rng.nextInt(below: 400)) }
            closed.advance(to: now); simulated.advance(to: now)
            let duration = Int64(1 + rng.nextInt(below: 250)) + latency
            switch roll {
            case 0...3:
                let pair = (closed.queuePrefetch(expert: Int32(n), duration: duration, at: now),
                            simulated.queuePrefetch(expert: Int32(n), duration: duration, at: now))
                queued.append(pair)
                prefetches.append(pair)
            case 4...5 where queued.contains(where: { closed.start(of: $0.0) < 0 }):
                queued.removeAll { closed.start(of: $0.0) >= 0 }  // started on their own: no longer queued
                let (c, s) = queued.remove(at: rng.nextInt(below: queued.count))
                #expect(simulated.start(of: s) < 0)
                if simulated.start(of: s) >= 0 { return }  // disagreement recorded: stop before the link refuses
                if roll == 4 {
                    closed.commit(c, at: now); simulated.commit(s, at: now)
                    committed.append((c, s))
                } else {
                    closed.cancel(c); simulated.cancel(s)
                }
            default:
                // Sometimes wait for a committed prefetch (one evicted while still arriving); the link takes it over.
                let after = committed.isEmpty || rng.nextInt(below: 3) > 0 ? [] : [committed.remove(at: rng.nextInt(below: committed.count))]
                prefetches.removeAll { pair in after.contains { $0 == pair } }  // handed over: their tickets may be reused
                let c = after.map(\.0).withUnsafeBufferPointer { closed.send(expert: Int32(n), duration: duration, at: now, after: $0) }
                let s = after.map(\.1).withUnsafeBufferPointer { simulated.send(expert: Int32(n), duration: duration, at: now, after: $0) }
                sent.append((c, s))
            }
            for (c, s) in sent { #expect(closed.landing(of: c) == simulated.landing(of: s), "seed \(seed), copy \(n)") }
        }
        closed.advance(to: now + 100_000); simulated.advance(to: now + 100_000)
        for (c, s) in prefetches where closed.start(of: c) >= 0 || simulated.start(of: s) >= 0 {
            #expect(closed.start(of: c) == simulated.start(of: s) && closed.end(of: c) == simulated.end(of: s), "prefetch \(c)")
        }
        #expect(closed.busyNanoseconds(until: now + 100_000) == simulated.busyNanoseconds(until: now + 100_000))
    }
}

/// The engine on a link of several copy engines.
@Suite struct SharedLinkReplayTests {
    /// One token, one layer: expert 0 (weight 0.9) is copied in full, expert 1 (weight 0.1) in int4 (53,126 bytes:
    /// 50,000 of 4-bit weights and 1,563 fp16 scales). 1 GB/s, 1 µs set-up, 2 µs non-expert and 3 µs expert compute.
    func mixedPrecisionLayer(engines: Int) throws -> [(SimEvent, Int64)] {
        let path = writeTemporary("""
            {"format":"moe-routing-trace","version":1,"model":"t","layers":1,"experts":2,"top_k":2}
            {"seq":0,"pos":0,"phase":"decode","experts":[[0,1]],"weights":[[0.9,0.1]]}
            """)
        var log = EventLog()
        let spec = ReplaySpec(model: tinyModel(layers: 1, experts: 2, topK: 2), hardware: tinyHardware(engines: engines),
                              policy: .mixedPrecision, budget: .experts(2), precision: PrecisionOptions(threshold: 0.3))
        _ = try Replayer.run(plan: StepPlan(try RoutingTrace.load(path)), traceName: "t", spec: spec, sink: &log)
        return log.drain().map { ($0.event, $0.time.nanoseconds) }
    }

    @Test func missesAreComputedInTheOrderTheyLand() throws {
        // Two engines: both copies start at the gate and share the link after their set-up (3,000). The int4 copy's
        // 53,126 ns of transfer take twice as long shared: it lands at 3,000 + 106,252 = 109,252 and is computed
        // first; the full copy has 146,874 ns left alone: 256,126.
        let two: [(SimEvent, Int64)] = [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.miss(expert: 1), 2_000), (.copyStart(expert: 0), 2_000), (.copyStart(expert: 1), 2_000),
            (.copyEnd(expert: 1), 109_252), (.computeStart(expert: 1), 109_252), (.computeEnd(expert: 1), 112_252),
            (.copyEnd(expert: 0), 256_126), (.computeStart(expert: 0), 256_126), (.computeEnd(expert: 0), 259_126),
            (.layerEnd(step: 0, layer: 0), 259_126),
        ]
        let got = try mixedPrecisionLayer(engines: 2)
        #expect(got.map(\.0) == two.map(\.0) && got.map(\.1) == two.map(\.1), "\(got)")
        // One engine: first come, first served, in id order.
        let one: [(SimEvent, Int64)] = [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.miss(expert: 1), 2_000), (.copyStart(expert: 0), 2_000), (.copyEnd(expert: 0), 203_000),
            (.copyStart(expert: 1), 203_000), (.computeStart(expert: 0), 203_000), (.computeEnd(expert: 0), 206_000),
            (.copyEnd(expert: 1), 257_126), (.computeStart(expert: 1), 257_126), (.computeEnd(expert: 1), 260_126),
            (.layerEnd(step: 0, layer: 0), 260_126),
        ]
        let single = try mixedPrecisionLayer(engines: 1)
        #expect(single.map(\.0) == one.map(\.0) && single.map(\.1) == one.map(\.1), "\(single)")
    }

    @Test(arguments: Array(UInt64(1)...8))
    func addingEnginesNeverSlowsALoneCopy(seed: UInt64) throws {
        // Top-1, LRU, no prefetch: at most one copy is ever on the link, so every engine count gives the same run.
        let trace = zipfTrace(seed: seed, layers: 4, experts: 8, topK: 1, tokens: 80, prefill: 0)
        let model = tinyModel(layers: 4, experts: 8, topK: 1)
        let runs = try [1, 2, 4, 8].map { try replayLogged(trace, model: model, hardware: tinyHardware(engines: $0), policy: .lru, budget: .experts(8)) }
        for (r, events) in runs.dropFirst() {
            #expect(r.counters.simNanoseconds == runs[0].0.counters.simNanoseconds)
            #expect(events.map(\.time) == runs[0].1.map(\.time))
        }
    }

    /// The bytes on the GPU at any moment, from the event log: a copy occupies its expert's room from its start
    /// until the expert is evicted, and at least until it lands (bytes on the link cannot be unsent).
    static func peakExpertsOnTheGPU(_ events: [ScheduledEvent]) -> Int {
        // Each expert's copies in order: (start, landing), the landing filled in when it comes.
        var copies: [Int: [(start: Int64, end: Int64)]] = [:]
        for e in events {
            if case let .copyStart(x) = e.event { copies[x, default: []].append((e.time.nanoseconds, .max)) }
            if case let .copyEnd(x) = e.event, let i = copies[x]?.lastIndex(where: { $0.end == .max }) { copies[x]![i].end = e.time.nanoseconds }
        }
        var next: [Int: Int] = [:], holding: [Int: (start: Int64, end: Int64)] = [:]
        var intervals: [(Int64, Int64)] = []
        for e in events {
            switch e.event {
            case let .copyStart(x):
                holding[x] = copies[x]![next[x, default: 0]]
                next[x, default: 0] += 1
            case let .evict(x):
                if let c = holding.removeValue(forKey: x) { intervals.append((c.start, max(e.time.nanoseconds, c.end))) }
            default: break
            }
        }
        for (_, c) in holding { intervals.append((c.start, .max)) }
        var points = intervals.flatMap { [($0.0, 1), ($0.1, -1)] }
        points.sort { $0.0 < $1.0 || ($0.0 == $1.0 && $0.1 < $1.1) }  // releases before starts at one time
        var now = 0, peak = 0
        for (_, d) in points { now += d; peak = max(peak, now) }
        return peak
    }

    @Test(arguments: Array(UInt64(1)...6))
    func memoryStaysWithinTheBudgetWithSeveralEnginesAndPrefetching(seed: UInt64) throws {
        let trace = zipfTrace(seed: seed, layers: 4, experts: 12, topK: 2, tokens: 120, prefill: 0)
        let model = tinyModel(layers: 4, experts: 12, topK: 2)
        for engines in [1, 2, 8] {
            for policy in [PolicyKind.pregated, .prefetchAll, .oraclePrefetch, .affinity] {
                // A per-layer share of 2 fills a layer's room with its prefetches still on the link: a demand copy of
                // a mispredicted layer must then evict one in flight, and wait for it to land.
                for (n, scope) in [(4, CacheScope.global), (6, .global), (10, .global), (8, .perLayer), (12, .perLayer)] {
                    let (r, events) = try replayLogged(trace, model: model, hardware: tinyHardware(engines: engines), policy: policy,
                                                       budget: .experts(n), scope: scope, prefetch: PrefetchOptions(lookahead: 2))
                    #expect(Self.peakExpertsOnTheGPU(events) <= n, "\(policy) \(engines) engines \(n) experts \(scope)")
                    let p = r.counters.prefetch
                    #expect(p.useful + p.late + p.wasted + p.cancelled == p.issued)
                }
            }
        }
    }
}
