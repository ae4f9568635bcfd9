import Foundation
import Testing
@testable import MoESim

/// Hand-worked prefetch scenarios with exact event logs: the rules that change results (demand copies before queued
/// prefetches, the useful/late boundary at the gate, cancellation) and the engine's own clock.
@Suite struct PrefetchScenarioTests {
    func run(_ lines: [String], model: ModelProfile, policy: PolicyKind, budget: Int) throws -> (ReplayResult, [(SimEvent, Int64)]) {
        let header = #"{"format":"moe-routing-trace","version":1,"model":"t","layers":\#(model.layers),"experts":\#(model.experts),"top_k":\#(model.topK)}"#
        let trace = try RoutingTrace.load(writeTemporary(([header] + lines).joined(separator: "\n") + "\n"))
        let (r, events) = try replayLogged(trace, model: model, policy: policy, budget: .experts(budget))
        return (r, events.map { ($0.event, $0.time.nanoseconds) })
    }

    func expectLog(_ got: [(SimEvent, Int64)], _ want: [(SimEvent, Int64)], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(got.map(\.0) == want.map(\.0), sourceLocation: sourceLocation)
        #expect(got.map(\.1) == want.map(\.1), "\(got)", sourceLocation: sourceLocation)
    }

    /// Layer 0 misses 0 and 1; the recorded prediction for layer 1 is its experts 0, 1, 3 (flat 4, 5, 7), queued in
    /// id order behind the demand copies. 201 µs a copy, 3 µs a compute, 2 µs of non-expert compute, room for 5.
    @Test func demandCopiesGoAheadOfQueuedPrefetches() throws {
        let (r, log) = try run([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0,1],[1,2]],"pred":[null,[1,3,0]]}"#],
                               model: tinyModel(layers: 2, experts: 4, topK: 2), policy: .crossLayerGate, budget: 5)
        expectLog(log, [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.miss(expert: 1), 2_000), (.prefetch(expert: 4), 2_000), (.prefetch(expert: 5), 2_000),
            (.prefetch(expert: 7), 2_000), (.copyStart(expert: 0), 2_000),
            (.copyEnd(expert: 0), 203_000), (.copyStart(expert: 1), 203_000), (.computeStart(expert: 0), 203_000),
            (.computeEnd(expert: 0), 206_000),
            // Only prefetch 4 starts before layer 0 ends (at 404,000, once the demand copies are done).
            (.copyEnd(expert: 1), 404_000), (.computeStart(expert: 1), 404_000), (.copyStart(expert: 4), 404_000),
            (.computeEnd(expert: 1), 407_000), (.layerEnd(step: 0, layer: 0), 407_000),
            // Layer 1 asks for 5, still queued: sent now as a demand copy, ahead of 7; 6 misses (0 is evicted for
            // it) and goes ahead of 7 too.
            (.layerStart(step: 0, layer: 1), 407_000), (.gate(step: 0, layer: 1), 409_000), (.miss(expert: 5), 409_000),
            (.evict(expert: 0), 409_000), (.miss(expert: 6), 409_000),
            (.copyEnd(expert: 4), 605_000), (.copyStart(expert: 5), 605_000),
            (.copyEnd(expert: 5), 806_000), (.copyStart(expert: 6), 806_000), (.computeStart(expert: 5), 806_000),
            (.computeEnd(expert: 5), 809_000),
            (.copyEnd(expert: 6), 1_007_000), (.computeStart(expert: 6), 1_007_000), (.copyStart(expert: 7), 1_007_000),
            (.computeEnd(expert: 6), 1_010_000), (.layerEnd(step: 0, layer: 1), 1_010_000), (.copyEnd(expert: 7), 1_208_000),
        ])
        let p = r.counters.prefetch
        #expect((p.issued, p.useful, p.late, p.wasted, p.cancelled) == (3, 0, 1, 2, 0))
        #expect(r.counters.hits == 0 && r.counters.misses == 4 && r.counters.simNanoseconds == 1_010_000)
        #expect(r.counters.bytesH2D == 6 * 200_000, "four demand copies (5 promoted) and two prefetches moved bytes")
    }

    /// Layer 0 misses 0; the prediction for layer 1 is 1, 2, 3 (flat 5, 6, 7). Layer 1 needs only 5, still on the
    /// link at its gate (late); 6 starts before layer 1 ends and is wasted; 7 has not started: cancelled.
    @Test func aPrefetchStillQueuedWhenItsLayerEndsIsCancelled() throws {
        let (r, log) = try run([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0],[1]],"pred":[null,[1,2,3]]}"#],
                               model: tinyModel(layers: 2, experts: 4, topK: 1), policy: .crossLayerGate, budget: 4)
        expectLog(log, [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.prefetch(expert: 5), 2_000), (.prefetch(expert: 6), 2_000), (.prefetch(expert: 7), 2_000),
            (.copyStart(expert: 0), 2_000),
            (.copyEnd(expert: 0), 203_000), (.computeStart(expert: 0), 203_000), (.copyStart(expert: 5), 203_000),
            (.computeEnd(expert: 0), 206_000), (.layerEnd(step: 0, layer: 0), 206_000), (.layerStart(step: 0, layer: 1), 206_000),
            (.gate(step: 0, layer: 1), 208_000), (.miss(expert: 5), 208_000),
            (.copyEnd(expert: 5), 404_000), (.computeStart(expert: 5), 404_000), (.copyStart(expert: 6), 404_000),
            (.computeEnd(expert: 5), 407_000), (.layerEnd(step: 0, layer: 1), 407_000), (.cancel(expert: 7), 407_000),
            (.copyEnd(expert: 6), 605_000),
        ])
        let p = r.counters.prefetch
        #expect((p.issued, p.useful, p.late, p.wasted, p.cancelled) == (3, 0, 1, 1, 1))
        #expect(r.counters.stallNanoseconds == 201_000 + (404_000 - 208_000))
        #expect(r.counters.bytesH2D == 3 * 200_000)
    }

    /// Two tokens over two layers: the oracle, at the last layer of the first step, prefetches the next step's first
    /// layer; the pre-gate cannot (the next token's routing does not exist yet), so that access is a demand miss.
    @Test func onlyTheOracleLooksAcrossTheStepBoundary() throws {
        let lines = [#"{"seq":0,"pos":0,"phase":"decode","experts":[[0],[1]]}"#, #"{"seq":0,"pos":1,"phase":"decode","experts":[[2],[3]]}"#]
        let model = tinyModel(layers: 2, experts: 4, topK: 1)
        let (oracle, oracleLog) = try run(lines, model: model, policy: .oraclePrefetch, budget: 2)
        let (pregated, pregatedLog) = try run(lines, model: model, policy: .pregated, budget: 2)
        let prefetched = { (log: [(SimEvent, Int64)]) in log.compactMap { if case let .prefetch(e) = $0.0 { e } else { nil } } }
        #expect(prefetched(oracleLog) == [5, 2, 7], "5 at step 0 layer 0; 2 (next step, layer 0) at layer 1; 7 at step 1 layer 0")
        #expect(prefetched(pregatedLog) == [5, 7])
        #expect(oracle.counters.prefetch.issued == 3 && oracle.counters.prefetch.useful + oracle.counters.prefetch.late == 3)
        #expect(pregated.counters.prefetch.issued == 2)
        // Prediction quality counts the crossing proposal against the step it is for.
        #expect(oracle.predPrecision == 1.0 && oracle.predRecall == 1.0)
    }

    /// prefetch-all (MoE-Prefetch), 2 layers × 4 experts, top-1, room for 5: steps ([0],[1]) then ([2],[3]); 201 µs a
    /// copy, 3 µs a compute, 2 µs to each gate. Step 0: layer 0 misses 0 and queues layer 1's 4–7; layer 1 needs 5,
    /// still queued, which the gate commits (404,000–605,000: late); no room for the next step's prefetches (every
    /// resident expert is proposed, arriving or queued). Step 1: 2 evicts 0 (LRU) and goes ahead of queued 7; layer 1
    /// waits for 7, then its prefetches for the next step evict the landed 4, 6 and 5, queuing 0, 1 and 3. 5, the
    /// copy the gate waited for at step 0, is evictable once it has landed: it used to stay pinned for the rest of the
    /// run, and 3 found no room (issue 24, item 1).
    @Test func aPrefetchAllCopyWaitedForInItsTurnDoesNotStayPinned() throws {
        let (r, log) = try run([#"{"seq":0,"pos":0,"phase":"decode","experts":[[0],[1]]}"#,
                                #"{"seq":0,"pos":1,"phase":"decode","experts":[[2],[3]]}"#],
                               model: tinyModel(layers: 2, experts: 4, topK: 1), policy: .prefetchAll, budget: 5)
        expectLog(log, [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.prefetch(expert: 4), 2_000), (.prefetch(expert: 5), 2_000), (.prefetch(expert: 6), 2_000),
            (.prefetch(expert: 7), 2_000), (.copyStart(expert: 0), 2_000),
            (.copyEnd(expert: 0), 203_000), (.computeStart(expert: 0), 203_000), (.copyStart(expert: 4), 203_000),
            (.computeEnd(expert: 0), 206_000), (.layerEnd(step: 0, layer: 0), 206_000),
            (.layerStart(step: 0, layer: 1), 206_000), (.gate(step: 0, layer: 1), 208_000), (.miss(expert: 5), 208_000),
            (.copyEnd(expert: 4), 404_000), (.copyStart(expert: 5), 404_000),
            (.copyEnd(expert: 5), 605_000), (.computeStart(expert: 5), 605_000), (.copyStart(expert: 6), 605_000),
            (.computeEnd(expert: 5), 608_000), (.layerEnd(step: 0, layer: 1), 608_000),
            (.layerStart(step: 1, layer: 0), 608_000), (.gate(step: 1, layer: 0), 610_000), (.evict(expert: 0), 610_000),
            (.miss(expert: 2), 610_000),
            (.copyEnd(expert: 6), 806_000), (.copyStart(expert: 2), 806_000),
            (.copyEnd(expert: 2), 1_007_000), (.computeStart(expert: 2), 1_007_000), (.copyStart(expert: 7), 1_007_000),
            (.computeEnd(expert: 2), 1_010_000), (.layerEnd(step: 1, layer: 0), 1_010_000),
            (.layerStart(step: 1, layer: 1), 1_010_000), (.gate(step: 1, layer: 1), 1_012_000), (.miss(expert: 7), 1_012_000),
            (.evict(expert: 4), 1_012_000), (.prefetch(expert: 0), 1_012_000), (.evict(expert: 6), 1_012_000),
            (.prefetch(expert: 1), 1_012_000), (.evict(expert: 5), 1_012_000), (.prefetch(expert: 3), 1_012_000),
            (.copyEnd(expert: 7), 1_208_000), (.computeStart(expert: 7), 1_208_000), (.copyStart(expert: 0), 1_208_000),
            (.computeEnd(expert: 7), 1_211_000), (.layerEnd(step: 1, layer: 1), 1_211_000), (.copyEnd(expert: 0), 1_409_000),
        ])
        let p = r.counters.prefetch
        #expect((p.issued, p.useful, p.late, p.wasted, p.cancelled) == (7, 0, 2, 3, 2), "4, 6, 0 wasted; 1, 3 never sent")
        #expect(r.counters.hits == 0 && r.counters.misses == 4 && r.counters.simNanoseconds == 1_211_000)
        #expect(r.counters.bytesH2D == 7 * 200_000, "demand 0, 5 (committed at its gate), 2; prefetches 4, 6, 7, 0")
        #expect(r.counters.linkBusyNanoseconds == 1_211_000 - 2_000, "busy from the first copy to the end, not past it")
    }

    /// The same case on two copy engines, under the same rule: a copy on the link is late, a queued one committed;
    /// copies share the link (1 µs set-up, then half rate each: 0 and 4 land at 2,000 + 1,000 + 400,000).
    @Test func prefetchAllFollowsTheSameRuleOnTwoEngines() throws {
        let header = #"{"format":"moe-routing-trace","version":1,"model":"t","layers":2,"experts":4,"top_k":1}"#
        let trace = try RoutingTrace.load(writeTemporary([header, #"{"seq":0,"pos":0,"phase":"decode","experts":[[0],[1]]}"#,
                                                           #"{"seq":0,"pos":1,"phase":"decode","experts":[[2],[3]]}"#].joined(separator: "\n") + "\n"))
        let (r, events) = try replayLogged(trace, model: tinyModel(layers: 2, experts: 4, topK: 1),
                                           hardware: tinyHardware(engines: 2), policy: .prefetchAll, budget: .experts(5))
        expectLog(events.map { ($0.event, $0.time.nanoseconds) }, [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.prefetch(expert: 4), 2_000), (.prefetch(expert: 5), 2_000), (.prefetch(expert: 6), 2_000),
            (.prefetch(expert: 7), 2_000), (.copyStart(expert: 0), 2_000), (.copyStart(expert: 4), 2_000),
            (.copyEnd(expert: 0), 403_000), (.copyEnd(expert: 4), 403_000), (.computeStart(expert: 0), 403_000),
            (.copyStart(expert: 5), 403_000), (.copyStart(expert: 6), 403_000),
            (.computeEnd(expert: 0), 406_000), (.layerEnd(step: 0, layer: 0), 406_000),
            // 5 is on the link at the gate: late. 4 has landed and is unpinned: evicted for the next step's 1.
            (.layerStart(step: 0, layer: 1), 406_000), (.gate(step: 0, layer: 1), 408_000), (.miss(expert: 5), 408_000),
            (.evict(expert: 4), 408_000), (.prefetch(expert: 1), 408_000),
            (.copyEnd(expert: 5), 804_000), (.copyEnd(expert: 6), 804_000), (.computeStart(expert: 5), 804_000),
            (.copyStart(expert: 7), 804_000), (.copyStart(expert: 1), 804_000),
            (.computeEnd(expert: 5), 807_000), (.layerEnd(step: 0, layer: 1), 807_000),
            (.layerStart(step: 1, layer: 0), 807_000), (.gate(step: 1, layer: 0), 809_000), (.evict(expert: 0), 809_000),
            (.miss(expert: 2), 809_000),
            (.copyEnd(expert: 7), 1_205_000), (.copyEnd(expert: 1), 1_205_000), (.copyStart(expert: 2), 1_205_000),
            (.copyEnd(expert: 2), 1_406_000), (.computeStart(expert: 2), 1_406_000), (.computeEnd(expert: 2), 1_409_000),
            (.layerEnd(step: 1, layer: 0), 1_409_000),
            (.layerStart(step: 1, layer: 1), 1_409_000), (.gate(step: 1, layer: 1), 1_411_000), (.hit(expert: 7), 1_411_000),
            (.evict(expert: 6), 1_411_000), (.prefetch(expert: 0), 1_411_000), (.evict(expert: 5), 1_411_000),
            (.prefetch(expert: 3), 1_411_000), (.computeStart(expert: 7), 1_411_000), (.copyStart(expert: 0), 1_411_000),
            (.copyStart(expert: 3), 1_411_000), (.computeEnd(expert: 7), 1_414_000), (.layerEnd(step: 1, layer: 1), 1_414_000),
        ])
        let p = r.counters.prefetch
        #expect((p.issued, p.useful, p.late, p.wasted, p.cancelled) == (7, 1, 1, 5, 0))
        #expect(r.counters.bytesH2D == 9 * 200_000 && r.counters.simNanoseconds == 1_414_000)
        #expect(r.counters.linkBusyNanoseconds == (1_406_000 - 2_000) + (1_414_000 - 1_411_000))
    }

    /// Pregated over two layers, with the non-expert compute sized so that the prefetch of layer 1's expert lands
    /// exactly at layer 1's gate (useful), or one nanosecond after it (late).
    @Test func aPrefetchLandingExactlyAtTheGateIsUseful() throws {
        // Non-expert time = 2 bytes/param / 1e11 B/s + 1 µs launch: 9,850,000 params give 198,000 ns.
        var model = tinyModel(layers: 2, experts: 4, topK: 1)
        model.nonExpertParamsPerLayer = 9_850_000
        let line = #"{"seq":0,"pos":0,"phase":"decode","experts":[[0],[1]]}"#
        let (onTime, log) = try run([line], model: model, policy: .pregated, budget: 2)
        expectLog(log, [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 198_000), (.miss(expert: 0), 198_000),
            (.prefetch(expert: 5), 198_000), (.copyStart(expert: 0), 198_000),
            (.copyEnd(expert: 0), 399_000), (.computeStart(expert: 0), 399_000), (.copyStart(expert: 5), 399_000),
            (.computeEnd(expert: 0), 402_000), (.layerEnd(step: 0, layer: 0), 402_000), (.layerStart(step: 0, layer: 1), 402_000),
            (.copyEnd(expert: 5), 600_000), (.gate(step: 0, layer: 1), 600_000), (.hit(expert: 5), 600_000),
            (.computeStart(expert: 5), 600_000), (.computeEnd(expert: 5), 603_000), (.layerEnd(step: 0, layer: 1), 603_000),
        ])
        #expect(onTime.counters.prefetch.useful == 1 && onTime.counters.prefetch.late == 0 && onTime.counters.hits == 1)
        // 50 parameters fewer: every gate 1 ns earlier, the copy's landing only 1 ns earlier: late by 1 ns.
        model.nonExpertParamsPerLayer = 9_849_950
        let (late, _) = try run([line], model: model, policy: .pregated, budget: 2)
        #expect(late.counters.prefetch.useful == 0 && late.counters.prefetch.late == 1 && late.counters.hits == 0)
        #expect(late.counters.stallNanoseconds == onTime.counters.stallNanoseconds + 1)
    }
}

/// The engine's clock, read from the engine itself: a source that hands out one step at a time sees the clock it is
/// asked with never go back, and every layer, as the engine reports it (not a sorted log), starts no earlier than
/// the previous one ended.
@Suite struct EngineClockTests {
    struct OneStepAtATime: StepSource {
        let plan: StepPlan
        var step = 0
        var asked: [Int64] = []
        mutating func next(at now: Int64) throws -> StepRun? {
            asked.append(now)
            guard step < plan.steps else { return nil }
            defer { step += 1 }
            return StepRun(plan: plan, steps: step..<step + 1, following: nil)
        }
    }

    /// Checks layer boundaries in the order the engine reports them.
    struct LayerOrder: EventSink {
        static var isEnabled: Bool { true }
        var lastEnd: Int64 = 0, layerStart: Int64 = 0, gate: Int64 = 0
        var violations = 0
        mutating func record(_ event: SimEvent, at t: Int64) {
            switch event {
            case .layerStart: if t < lastEnd { violations += 1 }; layerStart = t
            case .gate: if t < layerStart { violations += 1 }; gate = t
            case .layerEnd: if t < gate { violations += 1 }; lastEnd = t
            case .computeStart, .copyStart, .cpuStart: if t < 0 { violations += 1 }
            default: break
            }
        }
    }

    @Test(arguments: Array(UInt64(1)...8))
    func timeNeverGoesBackOnTheEnginesOwnClock(seed: UInt64) throws {
        let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 60, prefill: 4)
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        let plan = StepPlan(trace)
        for engines in [1, 3] {
            let cost = CostModel(model: model, hardware: tinyHardware(engines: engines))
            let cache = CacheShape(experts: 24, capacity: 8 * model.expertBytes, expertBytes: model.expertBytes)
            let engine = ReplayEngine(layers: 3, experts: 8, cost: cost, policy: LRUPolicy(cache: cache),
                                      predictor: OraclePredictor(plan: plan, lookahead: 2), handler: FullCopy(),
                                      memory: ExpertMemory(experts: 24, partitionOf: cache.partitionOf, capacities: cache.capacities),
                                      sink: LayerOrder())
            var source = OneStepAtATime(plan: plan)
            try engine.run(&source)
            #expect(source.asked.count == plan.steps + 1)
            #expect(zip(source.asked, source.asked.dropFirst()).allSatisfy { $0 <= $1 }, "the clock the source sees never goes back")
            #expect(source.asked.last == engine.finish().simNanoseconds)
            #expect(engine.sink.violations == 0)
        }
    }
}
