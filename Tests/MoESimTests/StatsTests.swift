import Testing
@testable import MoESim

@Suite struct StatsTests {
    @Test func statisticsOfAHandMadeTrace() {
        // Layer 0 always routes to {0,1}; layer 1 alternates {2,3} and {0,1}.
        let cells: [[[Int]?]] = (0..<10).map { t in [[0, 1], t % 2 == 0 ? [2, 3] : [0, 1]] }
        let s = TraceStats(makeTrace(cells, experts: 8, topK: 2))
        #expect(s.topQuarterShare.max == 1.0)      // layer 0: the top 2 of 8 take everything
        #expect(s.topQuarterShare.min == 0.5)      // layer 1: two pairs, half each
        #expect(s.temporalReuse.all == 0.5)        // layer 0 keeps both, layer 1 keeps none
        #expect(s.temporalReuse.prefill == nil)
    }

    @Test func syntheticDefaultsReproduceTheRealMixtralStatistics() throws {
        // PROFILES.md: top-25% share ~0.32-0.34, reuse t->t+1 ~0.38, inter-layer recall ~0.29-0.40 above popularity.
        let model = try ModelProfile.preset("mixtral-8x7b")
        for seed: UInt64 in [1, 2, 3] {
            let trace = try SyntheticTraceGenerator(model: model, spec: SyntheticTraceSpec(tokens: 1500, seed: seed)).makeTrace()
            let s = TraceStats(trace)
            #expect(abs(s.topQuarterShare.mean - 0.33) < 0.03, "share \(s.topQuarterShare.mean)")
            #expect(abs(s.temporalReuse.all! - 0.38) < 0.03, "reuse \(s.temporalReuse.all!)")
            #expect(s.interLayerRecall! > 0.36 && s.interLayerRecall! < 0.45, "recall \(s.interLayerRecall!)")
            #expect(s.interLayerRecall! > s.interLayerBaseline! + 0.03)
        }
    }

    @Test(.needsRealTraces) func realTraceStatisticsMatchTheirSources() throws {
        let folder = try #require(realTracesFolder)
        // SOURCES.md: p0 top-25% share 0.338 / 0.298 / 0.392, reuse prefill 0.391; decode_approx share 0.318, reuse 0.376.
        let p0 = TraceStats(try RoutingTrace.load(folder + "/mixtral8x7b_humaneval_p0_prefill_decode.jsonl"))
        #expect(abs(p0.topQuarterShare.mean - 0.338) < 0.001 && abs(p0.topQuarterShare.min - 0.298) < 0.001)
        #expect(abs(p0.temporalReuse.prefill! - 0.391) < 0.001)
        #expect(abs(p0.temporalReuse.all! - 0.381) < 0.002)
        let d = TraceStats(try RoutingTrace.load(folder + "/mixtral8x7b_humaneval_gsm8k_decode_approx.jsonl"))
        #expect(abs(d.topQuarterShare.mean - 0.318) < 0.001)
        #expect(abs(d.temporalReuse.decode! - 0.376) < 0.001)
    }
}
