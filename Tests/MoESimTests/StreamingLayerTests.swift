import Foundation
import Testing
@testable import MoESim

/// Layers whose expert set does not fit the budget stream their experts through it: load, compute, free.
@Suite struct StreamingLayerTests {
    @Test func threeExpertsThroughARoomForOne() throws {
        // One token routed to experts 0, 1, 2 of one layer; room for one expert. 201 µs a copy, 3 µs a compute.
        let trace = makeTrace([[[0, 1, 2]]], experts: 4, topK: 3)
        let model = tinyModel(layers: 1, experts: 4, topK: 3)
        let (r, events) = try replayLogged(trace, model: model, policy: .lru, budget: .experts(1))
        let log = events.map { ($0.event, $0.time.nanoseconds) }
        let want: [(SimEvent, Int64)] = [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.miss(expert: 1), 2_000), (.miss(expert: 2), 2_000), (.copyStart(expert: 0), 2_000),
            // 0 lands, is computed, and only then freed for 1; likewise 1 for 2.
            (.copyEnd(expert: 0), 203_000), (.computeStart(expert: 0), 203_000), (.computeEnd(expert: 0), 206_000),
            (.evict(expert: 0), 206_000), (.copyStart(expert: 1), 206_000),
            (.copyEnd(expert: 1), 407_000), (.computeStart(expert: 1), 407_000), (.computeEnd(expert: 1), 410_000),
            (.evict(expert: 1), 410_000), (.copyStart(expert: 2), 410_000),
            (.copyEnd(expert: 2), 611_000), (.computeStart(expert: 2), 611_000), (.computeEnd(expert: 2), 614_000),
            (.layerEnd(step: 0, layer: 0), 614_000),
        ]
        #expect(log.map(\.0) == want.map(\.0), "\(log)")
        #expect(log.map(\.1) == want.map(\.1))
        #expect(r.counters.simNanoseconds == 614_000 && r.counters.stallNanoseconds == 3 * 201_000)
        #expect(r.counters.peakExpertBytes == model.expertBytes && r.counters.misses == 3)
    }

    @Test(arguments: Array(UInt64(1)...8))
    func streamedLayersStayWithinTheBudget(seed: UInt64) throws {
        // Prefill steps of 6 tokens route to up to 12 experts a layer; budgets of 1 to 6 experts make them stream.
        let trace = zipfTrace(seed: seed, layers: 3, experts: 12, topK: 2, tokens: 80, prefill: 6)
        let model = tinyModel(layers: 3, experts: 12, topK: 2)
        for policy in PolicyKind.allCases where policy != .allResident {
            for engines in [1, 2] {
                var lastHits = -1
                for n in [1, 2, 4, 6] {
                    let (r, events) = try replayLogged(trace, model: model, hardware: tinyHardware(engines: engines), policy: policy,
                                                       budget: .experts(n), scope: n == 6 ? .perLayer : .global)
                    #expect(r.counters.peakExpertBytes <= n * model.expertBytes, "\(policy) \(n) experts")
                    // The count is in whole experts: not for the low-precision strategies' smaller ones, nor on-demand,
                    // which frees its layer without evict events.
                    if policy != .onDemand && !policy.copiesLowPrecision && policy != .cpuFallback {
                        #expect(SharedLinkReplayTests.peakExpertsOnTheGPU(events) <= n, "\(policy) \(n) experts, \(engines) engines")
                    }
                    #expect(r.counters.accesses == StepPlan(trace).accesses)
                    if policy == .lru || policy == .belady { #expect(r.counters.hits >= lastHits); lastHits = r.counters.hits }
                }
            }
        }
        // One expert per layer, per-layer scope: mixtral-offloading's smallest cache.
        let perLayer = try replay(trace, model: model, policy: .lru, budget: .experts(3), scope: .perLayer)
        #expect(perLayer.counters.peakExpertBytes <= 3 * model.expertBytes && perLayer.counters.misses > 0)
    }

    @Test(.needsRealTraces) func theRealTracesReplayWithOneExpertPerLayer() throws {
        let folder = try #require(realTracesFolder)
        let cli = CLITests()
        for name in ["mixtral8x7b_humaneval_p0_prefill_decode.jsonl", "mixtral8x7b_humaneval_gsm8k_decode_approx.jsonl"] {
            let r = try cli.moesim(["replay", folder + "/" + name, "--model", "mixtral-8x7b", "--scope", "per-layer",
                                    "--budget", "32experts"])
            #expect(r.status == 0 && r.stdout.contains("tokens/s"), "\(r.stderr)")
        }
    }
}
