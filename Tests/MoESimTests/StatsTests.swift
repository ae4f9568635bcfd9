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

/// Reuse distance and working sets (issue 15), worked by hand.
struct ReuseDistanceTests {
    /// Sequence 0 routes layer 0 to 0, 0, 1, 0, 2 and sequence 1 to 0; layer 1 always to 3.
    static let trace = makeTrace([[[0], [3]], [[0], [3]], [[1], [3]], [[0], [3]], [[2], [3]], [[0], [3]]], experts: 4, topK: 1,
                                 seqs: [0, 0, 0, 0, 0, 1])

    @Test func reuseDistanceByHand() {
        let r = TraceStats.reuseDistance(Self.trace)
        // Layer 0: distances 1 (t1) and 2 (t3); layer 1: 1, 1, 1, 1 within sequence 0; sequence 1 starts afresh.
        // 12 accesses, 6 reused: distances 1, 2, 1, 1, 1, 1 → median 1, within 1: 5/12, within 8: 6/12.
        #expect(r.median == 1)
        #expect(r.within1 == 5.0 / 12 && r.within8 == 6.0 / 12)
        let far = makeTrace([[[0]], [[1]], [[2]], [[0]]], experts: 4, topK: 1)
        let f = TraceStats.reuseDistance(far)
        #expect(f.median == 3 && f.within1 == 0 && f.within8 == 0.25)
    }

    @Test func workingSetsByHand() {
        // Windows of 2 tokens: layer 0 has {0}, {1, 0}, {2} in sequence 0 and {0} in sequence 1: 5 / 4 = 1.25;
        // layer 1 has one expert in each of the 4 windows.
        let two = TraceStats.workingSet(Self.trace, window: 2)
        #expect(two.mean == (1.25 + 1) / 2 && two.largestLayer == 1.25)
        // Windows of 8: one per sequence: layer 0 {0, 1, 2} and {0}.
        let eight = TraceStats.workingSet(Self.trace, window: 8)
        #expect(eight.mean == (2 + 1) / 2 && eight.largestLayer == 2)
        #expect(TraceStats(Self.trace).workingSets.map(\.window) == [8, 64])
    }
}
