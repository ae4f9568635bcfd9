import Foundation
import Testing
@testable import MoESim

/// The link as a resource (processor sharing among copy engines), driven without an engine, and the engine's use of
/// it: hand-worked times, and properties over seeds.
@Suite struct LinkTests {
    @Test func twoCopiesShareTheBandwidthAndALoneOneGetsItAll() {
        // 10 ns set-up; transfers of 100 and 300 ns at the whole link's rate.
        let link = Link(engines: 2, latency: 10)
        let a = link.sendDemand(expert: 0, duration: 110, at: 0), b = link.sendDemand(expert: 1, duration: 310, at: 0)
        // Both transfer from 10 at half rate: a's 100 ns take 200 (lands 210), b has 200 left alone: lands 410.
        #expect(link.landing(of: b.ticket) == 410)
        #expect(link.end(of: a.ticket) == 210)
        let c = link.sendDemand(expert: 2, duration: 110, at: 1000)
        link.advance(to: 1000)
        #expect(link.landing(of: c.ticket) == 1110, "alone again: its own duration")
    }

    @Test func demandCopiesGoBeforeQueuedPrefetchesAndWaitForTheMemoryTheyTake() {
        let link = Link(engines: 2, latency: 0)
        let p1 = link.queuePrefetch(expert: 10, duration: 100, at: 0)
        let p2 = link.queuePrefetch(expert: 11, duration: 100, at: 0)
        link.advance(to: 1)  // both prefetches start at 0 on the two engines
        #expect(link.start(of: p1) == 0 && link.start(of: p2) == 0)
        let p3 = link.queuePrefetch(expert: 12, duration: 100, at: 1)
        // A demand copy that evicted p1 (still arriving) may not start before p1 lands, though an engine frees then.
        let d = link.sendDemand(expert: 5, duration: 100, at: 1, after: p1)
        let lands = link.landing(of: d.ticket)
        #expect(link.end(of: p1) == 200 && link.start(of: d.ticket) == 200, "waits for p1")
        #expect(link.start(of: p3) == 200 || link.start(of: p3) >= 200)
        #expect(lands >= 300, "shares with p3 from 200")
        // With one engine the same rules hold, in order.
        let one = Link(engines: 1, latency: 0)
        let q = one.queuePrefetch(expert: 1, duration: 50, at: 0)
        let demand = one.sendDemand(expert: 2, duration: 50, at: 0)
        #expect(demand.start == 0 && demand.end == 50)
        #expect(one.startNextQueued(before: 1000) == q && one.start(of: q) == 50 && one.end(of: q) == 100)
    }

    /// Random copies on a random link: each starts no earlier than issued, lands no earlier than its duration after
    /// its start, no more than `engines` are on the link at once, the clock never goes back, and every copy's
    /// landing is at least its lone duration.
    @Test(arguments: Array(UInt64(1)...16))
    func theLinkKeepsItsRules(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let engines = 1 + rng.nextInt(below: 4)
        let link = Link(engines: engines, latency: Int64(rng.nextInt(below: 20)))
        var copies: [(ticket: Link.Ticket, issued: Int64, duration: Int64)] = []
        var now: Int64 = 0, lastClock: Int64 = 0
        var intervals: [(Int64, Int64)] = []
        for _ in 0..<60 {
            now += Int64(rng.nextInt(below: 200))
            link.advance(to: now)
            #expect(link.clock >= lastClock)
            lastClock = link.clock
            let duration = Int64(20 + rng.nextInt(below: 300))
            if rng.nextInt(below: 2) == 0 {
                copies.append((link.queuePrefetch(expert: Int32(copies.count), duration: duration, at: now), now, duration))
            } else {
                let c = link.sendDemand(expert: Int32(copies.count), duration: duration, at: now)
                copies.append((c.ticket >= 0 ? c.ticket : -1, now, duration))
                if c.ticket < 0 { intervals.append((c.start, c.end)); #expect(c.start >= now && c.end - c.start == duration) }
            }
        }
        link.advance(to: .max / 4)  // tickets are not drained here, so none is recycled before it is checked
        for c in copies where c.ticket >= 0 {
            let start = link.start(of: c.ticket), end = link.end(of: c.ticket)
            #expect(start >= c.issued && end >= start + c.duration, "a copy never lands before its lone duration")
            intervals.append((start, end))
        }
        // At no time are more than `engines` copies on the link.
        for (s, _) in intervals {
            #expect(intervals.filter { $0.0 <= s && s < $0.1 }.count <= engines)
        }
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
