import Foundation
import Testing
@testable import MoESim

/// Hand-worked replays: exact victims, exact event logs, and the closed form of on-demand.
@Suite struct ScenarioTests {
    @Test func twoExpertsOneLinkEventLog() throws {
        let trace = makeTrace([[[0]], [[1]], [[0]]], experts: 2, topK: 1)
        let model = tinyModel(layers: 1, experts: 2, topK: 1)
        let (_, events) = try replayLogged(trace, model: model, policy: .lru, budget: .experts(1))
        // Non-expert compute 2 µs, copy 1 µs + 200 kB / 1 GB/s = 201 µs, expert compute 2 µs + 1 µs launch.
        let expected: [(SimEvent, Int64)] = [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.copyStart(expert: 0), 2_000), (.copyEnd(expert: 0), 203_000), (.computeStart(expert: 0), 203_000),
            (.computeEnd(expert: 0), 206_000), (.layerEnd(step: 0, layer: 0), 206_000),
            (.layerStart(step: 1, layer: 0), 206_000), (.gate(step: 1, layer: 0), 208_000), (.evict(expert: 0), 208_000),
            (.miss(expert: 1), 208_000), (.copyStart(expert: 1), 208_000), (.copyEnd(expert: 1), 409_000),
            (.computeStart(expert: 1), 409_000), (.computeEnd(expert: 1), 412_000), (.layerEnd(step: 1, layer: 0), 412_000),
            (.layerStart(step: 2, layer: 0), 412_000), (.gate(step: 2, layer: 0), 414_000), (.evict(expert: 1), 414_000),
            (.miss(expert: 0), 414_000), (.copyStart(expert: 0), 414_000), (.copyEnd(expert: 0), 615_000),
            (.computeStart(expert: 0), 615_000), (.computeEnd(expert: 0), 618_000), (.layerEnd(step: 2, layer: 0), 618_000),
        ]
        #expect(events.map(\.event) == expected.map(\.0))
        #expect(events.map(\.time.nanoseconds) == expected.map(\.1))
    }

    @Test func onDemandMatchesItsClosedForm() throws {
        // Each layer: non-expert compute, then all k copies back to back, then k expert computes: no overlap.
        for (tokens, layers, k) in [(6, 2, 2), (5, 3, 1), (4, 4, 3)] {
            let trace = zipfTrace(seed: UInt64(tokens), layers: layers, experts: 6, topK: k, tokens: tokens, prefill: 0)
            let model = tinyModel(layers: layers, experts: 6, topK: k)
            let hw = tinyHardware()
            let r = try replay(trace, model: model, hardware: hw, policy: .onDemand, budget: .experts(k))
            let cost = CostModel(model: model, hardware: hw)
            let layer = cost.nonExpertCompute(tokens: 1, attention: StepAttention(pairs: 1, kvRead: 1, kvHeld: 1)) + Int64(k) * (cost.expertCopy + cost.expertComputeOneToken)
            #expect(r.counters.simNanoseconds == Int64(tokens * layers) * layer)
            #expect(r.counters.stallNanoseconds == Int64(tokens * layers * k) * cost.expertCopy)
            #expect(r.counters.misses == tokens * layers * k)
            #expect(cost.expertCopy == 201_000 && cost.expertComputeOneToken == 3_000)
        }
    }

    @Test func lruOverlapsComputeWithTheNextCopy() throws {
        // One layer, two misses: the first expert computes while the second copies, so the layer is
        // non-expert + 2 copies + 1 compute, not + 2 computes.
        let trace = makeTrace([[[0, 1]]], experts: 2, topK: 2)
        let model = tinyModel(layers: 1, experts: 2, topK: 2)
        let r = try replay(trace, model: model, policy: .lru, budget: .experts(2))
        #expect(r.counters.simNanoseconds == 2_000 + 2 * 201_000 + 3_000)
    }

    @Test func twoCopyEnginesShareTheBandwidth() throws {
        let trace = makeTrace([[[0, 1]]], experts: 2, topK: 2)
        let model = tinyModel(layers: 1, experts: 2, topK: 2)
        let r = try replay(trace, model: model, hardware: tinyHardware(engines: 2), policy: .lru, budget: .experts(2))
        // Both copies run at once, each at half the bandwidth: 1 µs of set-up, then 200 µs of transfer each at half
        // rate (400 µs); they land together, then two computes.
        #expect(r.counters.simNanoseconds == 2_000 + 401_000 + 2 * 3_000)
    }

    /// The golden trace in traces/, with the counts and victims worked by hand in docs/trace-format.md.
    @Test(arguments: [PolicyKind.onDemand, .lru, .fifo, .belady, .allResident])
    func goldenTinyTrace(policy: PolicyKind) throws {
        let trace = try RoutingTrace.load(packageRoot + "/traces/golden-tiny.jsonl")
        let expected = try String(contentsOfFile: packageRoot + "/traces/golden-tiny.expected.csv", encoding: .utf8)
            .split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
            .first { $0[0] == policy.rawValue }!
        let (r, events) = try replayLogged(trace, model: tinyModel(), policy: policy, budget: .experts(Int(expected[1])!))
        #expect(r.counters.accesses == Int(expected[2])!)
        #expect(r.counters.hits == Int(expected[3])!)
        #expect(r.counters.misses == Int(expected[4])!)
        let victims = events.compactMap { if case let .evict(e) = $0.event { e } else { nil } }
        #expect(victims.map(String.init).joined(separator: " ") == expected[5])
    }

    @Test func recordedPredictionsDriveTheCrossLayerGate() throws {
        let path = writeTemporary("""
            {"format":"moe-routing-trace","version":1,"model":"t","layers":2,"experts":4,"top_k":1}
            {"seq":0,"pos":0,"phase":"decode","experts":[[0],[1]],"pred":[null,[1]]}
            {"seq":0,"pos":1,"phase":"decode","experts":[[2],[3]],"pred":[null,[0]]}
            {"seq":0,"pos":2,"phase":"decode","experts":[[1],[2]],"pred":[[],[2,3]]}
            """)
        let trace = try RoutingTrace.load(path)
        #expect(trace.hasPredictions && Array(trace.predictedIDs(token: 2, layer: 1)) == [2, 3])
        let r = try replay(trace, model: tinyModel(layers: 2, experts: 4, topK: 1), policy: .crossLayerGate, budget: .experts(3))
        #expect(r.counters.predictorSource == "trace")
        #expect(r.predPrecision == 0.5)         // 1 of 1, 0 of 1, 1 of 2
        #expect(r.predRecall == 2.0 / 3.0)
        // The writer keeps the field.
        let copy = temporaryDirectory() + "/copy.jsonl"
        let writer = try TraceWriter(path: copy, header: trace.header)
        let reader = try TraceReader(path: path)
        var record = TokenRecord(layers: 2, topK: 1)
        while try reader.next(into: &record) { try writer.append(record) }
        try writer.finish()
        #expect(try RoutingTrace.load(copy).predicted == trace.predicted)
    }
}

@Suite struct EventReportTests {
    @Test(arguments: [PolicyKind.lru, .pregated, .onDemand])
    func timelineAndBreakdownsAgreeWithTheCounters(policy: PolicyKind) throws {
        let trace = zipfTrace(seed: 4, layers: 3, experts: 8, topK: 2, tokens: 60)
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        let (r, events) = try replayLogged(trace, model: model, policy: policy, budget: .experts(8))
        let plan = StepPlan(trace)
        // Per layer: accesses, hits and misses add up; stall adds up to the run's.
        let layers = LayerBreakdown.rows(events, layers: 3, experts: 8)
        #expect(layers.map { Int($0[1])! }.reduce(0, +) == r.counters.accesses)
        #expect(layers.map { Int($0[2])! }.reduce(0, +) == r.counters.hits)
        #expect(layers.map { Int($0[3])! }.reduce(0, +) == r.counters.misses)
        #expect(abs(layers.map { Double($0[4])! }.reduce(0, +) - r.stallSeconds) < 1e-9)
        // Per step: one row per step, latencies add up to the simulated time.
        let steps = StepBreakdown.rows(events, plan: plan)
        #expect(steps.count == plan.steps)
        #expect(abs(steps.map { Double($0[5])! }.reduce(0, +) - r.simSeconds) < 1e-6)
        #expect(steps.map { Int($0[6])! }.reduce(0, +) == r.counters.hits)
        // The timeline is JSON whose complete events are balanced: one per compute, copy and layer.
        let json = try JSONSerialization.jsonObject(with: Data(Timeline.json(events, experts: 8).utf8)) as! [String: Any]
        let traceEvents = json["traceEvents"] as! [[String: Any]]
        let complete = traceEvents.filter { $0["ph"] as? String == "X" }
        #expect(complete.allSatisfy { ($0["dur"] as! Double) >= 0 })
        let computes = events.filter { if case .computeStart = $0.event { true } else { false } }.count
        let copies = events.filter { if case .copyStart = $0.event { true } else { false } }.count
        #expect(complete.count == computes + copies + plan.steps * 3)
    }

    @Test func theLogStopsAtItsStepLimit() throws {
        let trace = zipfTrace(seed: 4, layers: 3, experts: 8, topK: 2, tokens: 60, prefill: 0)
        var log = EventLog(stepLimit: 5)
        let spec = ReplaySpec(model: tinyModel(layers: 3, experts: 8, topK: 2), hardware: tinyHardware(), policy: .lru,
                              budget: .experts(8))
        _ = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec, sink: &log)
        let starts = log.drain().compactMap { if case let .layerStart(s, _) = $0.event { s } else { nil } }
        #expect(Set(starts) == Set(0..<5))
    }
}
