import Foundation
import Testing
@testable import MoESim

/// MoE-Infinity's predictor (docs/policies.md): activation matrices per sequence, matched against the finished ones.
@Suite struct MoEInfinityTests {
    /// Runs the predictor over every (step, layer) of `trace`'s plan; returns the proposals at each, as flat ids.
    static func predictions(_ trace: RoutingTrace, limit: Int, capacity: Int = 1000) -> [[Int32]] {
        let plan = StepPlan(trace)
        let predictor = MoEInfinityPredictor(layers: plan.layers, experts: plan.experts, limit: limit, capacity: capacity)
        predictor.rebind(plan, following: nil)
        var proposals = ExpertList(capacity: 64)
        defer { proposals.deallocate() }
        var out: [[Int32]] = []
        for s in 0..<plan.steps {
            for l in 0..<plan.layers {
                let range = Int(plan.layerStart[s * plan.layers + l])..<Int(plan.layerStart[s * plan.layers + l + 1])
                proposals.removeAll()
                Array(plan.accessExpert[range]).withUnsafeBufferPointer {
                    predictor.predict(step: s, layer: l, revealed: $0, into: &proposals)
                }
                out.append(Array(proposals.elements))
            }
        }
        return out
    }

    @Test func theMatchedRequestDrivesThePrediction() {
        // 2 layers x 4 experts, top-1. Sequence 0 routes 0 then 1, sequence 1 routes 2 then 3; sequence 2 routes 2,
        // then 3, twice. Flat ids: layer 1's experts are 4 ... 7.
        let trace = makeTrace([[[0], [1]], [[2], [3]], [[2], [3]], [[2], [3]]], experts: 4, topK: 1, seqs: [0, 1, 2, 2])
        let p = Self.predictions(trace, limit: 2)
        // Sequence 0: nothing stored yet. Its layer 1 predicts nothing (the last layer) anywhere.
        #expect(p[0].isEmpty && p[1].isEmpty && p[3].isEmpty && p[5].isEmpty && p[7].isEmpty)
        // Sequence 1, layer 0: one entry (sequence 0), whose layer 1 routed expert 1: 5 first, then the experts it
        // never routed, each at 1e-8 x (1 - 1/3), in id order: 4.
        #expect(p[2] == [5, 4])
        // Sequence 2, first token: its rows after layer 0 are empty, every entry's cosine is 0: the first entry
        // (sequence 0) wins the tie.
        #expect(p[4] == [5, 4])
        // Sequence 2, second token: its layer 1 routed 3 once, like sequence 1's: cosine 1 against 0.
        #expect(p[6] == [7, 4])
    }

    @Test func aFullCollectionReplacesTheLeastMatched() {
        // Capacity 2. Sequences 0 and 1 are stored; sequence 2's one token matches sequence 0 (the tie's first), so
        // when sequence 2 ends it replaces sequence 1 (matched least). Sequence 3's second token then routes like
        // sequence 2 at layer 1 (expert 2) and is predicted from it, where sequence 1 would have said 3.
        let trace = makeTrace([[[0], [1]], [[1], [3]], [[3], [2]], [[0], [2]], [[0], [2]]], experts: 4, topK: 1,
                              seqs: [0, 1, 2, 3, 3])
        let p = Self.predictions(trace, limit: 1, capacity: 2)
        #expect(p[4] == [5])  // sequence 2: the tie goes to sequence 0 (layer 1 routed 1)
        #expect(p[6] == [5])  // sequence 3's first token: a tie again, sequence 0 first
        #expect(p[8] == [6])  // sequence 3's second token: sequence 2's EAM, which replaced sequence 1's
    }

    @Test func itRunsAsAStrategyWithinTheRules() throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        for seed in propertySeeds(4) {
            let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 60, sequences: 6)
            let r = try replay(trace, model: model, policy: .moeInfinity, budget: .experts(6))
            #expect(r.counters.prefetch.issued > 0, "seed \(seed)")
            #expect(r.counters.peakExpertBytes <= 6 * model.expertBytes)
            #expect(r.counters.predictorSource == "online")
        }
    }
    /// The matching's dot product of two rows of token counts (whole numbers) gives the bits of a sum in expert
    /// order when it runs in four sums; rows that are not whole numbers are summed in expert order.
    @Test(arguments: propertySeeds(8))
    func aDotProductOfCountsHasTheBitsOfOneInExpertOrder(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for _ in 0..<200 {
            let count = 1 + rng.nextInt(below: 300)
            let zeros = rng.nextDouble()  // most rows are sparse: a share of zero counts
            let whole = (0..<(2 * count)).map { _ in rng.nextDouble() < zeros ? Float(0) : Float(1 + rng.nextInt(below: 60_000)) }
            let fractional = whole.map { $0 * 0.1 + Float(rng.nextDouble()) }
            for (values, anyOrder) in [(whole, true), (fractional, false)] {
                var inOrder = 0.0
                for e in 0..<count { inOrder += Double(values[e]) * Double(values[count + e]) }
                let dot = values.withUnsafeBufferPointer {
                    MoEInfinityPredictor.dot($0.baseAddress!, $0.baseAddress! + count, count: count, anyOrder: anyOrder)
                }
                #expect(dot.bitPattern == inOrder.bitPattern, "seed \(seed), \(count) experts, any order: \(anyOrder)")
            }
        }
    }
}
