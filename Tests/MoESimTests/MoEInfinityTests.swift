import Foundation
import Testing
@testable import MoESim

/// MoE-Infinity's predictor (docs/policies.md): activation matrices per sequence, matched against the finished ones.
@Suite struct MoEInfinityTests {
    /// Runs the predictor over every (step, layer) of `trace`'s plan; returns the proposals at each, as flat ids.
    static func predictions(_ trace: RoutingTrace, limit: Int, capacity: Int = 1000,
                            exactRowSum: Double = MoEInfinityPredictor.exactSum) -> [[Int32]] {
        let plan = StepPlan(trace)
        let predictor = MoEInfinityPredictor(layers: plan.layers, experts: plan.experts, limit: limit, capacity: capacity,
                                             exactRowSum: exactRowSum)
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
    /// Over random traces (several sequences, prefill steps whose experts carry several tokens, a collection small
    /// enough to be replaced), the predictor proposes exactly what a plain transcription of its definition does,
    /// which recomputes every cosine in expert order at every layer; with the exact bound lowered to a few tokens,
    /// the rows past it are recomputed in expert order too, and the answers are the same.
    @Test(arguments: propertySeeds(8))
    func matchesAPlainTranscriptionOfItsDefinition(seed: UInt64) {
        let layers = 2 + Int(seed % 3), experts = 6 + Int(seed % 4) * 3, topK = 1 + Int(seed % 3)
        let trace = zipfTrace(seed: seed, layers: layers, experts: experts, topK: topK, tokens: 120,
                              sequences: 3 + Int(seed % 5), prefill: 1 + Int(seed % 6))
        let capacity = 2 + Int(seed % 3), limit = topK + Int(seed % 2)
        var reference = ReferenceMoEInfinity(layers: layers, experts: experts, limit: limit, capacity: capacity)
        let expected = reference.run(StepPlan(trace))
        for exactRowSum in [MoEInfinityPredictor.exactSum, 3] {
            let p = Self.predictions(trace, limit: limit, capacity: capacity, exactRowSum: exactRowSum)
            let same = p == expected
            #expect(same, "seed \(seed), exact row sums up to \(exactRowSum)")
        }
    }
}

/// MoE-Infinity's matching and ranking as docs/policies.md defines them, written for clarity: every cosine of the
/// current activation matrix against every stored one recomputed, in expert order, at every layer.
private struct ReferenceMoEInfinity {
    let layers: Int, experts: Int, limit: Int, capacity: Int
    var stored: [(eam: [Float], matches: Double)] = []

    init(layers: Int, experts: Int, limit: Int, capacity: Int) {
        self.layers = layers; self.experts = experts; self.limit = limit; self.capacity = capacity
    }

    /// cos(row l of a, row l of b) after normalising each row to sum 1, with torch's ε on the normalised norms.
    func cosine(_ a: [Float], _ b: [Float], row l: Int) -> Double {
        let x = a[(l * experts)..<((l + 1) * experts)].map(Double.init), y = b[(l * experts)..<((l + 1) * experts)]
        let sumA = x.reduce(0, +), sumB = Double(y.reduce(Float(0), +))
        guard sumA > 0, sumB > 0 else { return 0 }
        var dot = 0.0
        for e in 0..<experts { dot += x[e] * Double(y[y.startIndex + e]) }
        let normA = x.reduce(0) { $0 + $1 * $1 }.squareRoot(), normB = y.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        return dot / (sumA * sumB) / max((normA / sumA) * (normB / sumB), 1e-6)
    }

    mutating func run(_ plan: StepPlan) -> [[Int32]] {
        var out: [[Int32]] = [], current = [Float](repeating: 0, count: layers * experts), seq: Int32 = -1
        for s in 0..<plan.steps {
            if plan.stepSeq[s] != seq {
                if seq >= 0 {
                    if stored.count < capacity {
                        stored.append((current, 1))
                    } else {
                        let weakest = stored.indices.min { stored[$0].matches < stored[$1].matches }!
                        stored[weakest] = (current, 1)
                    }
                }
                seq = plan.stepSeq[s]
                current = [Float](repeating: 0, count: layers * experts)
            }
            for l in 0..<layers {
                let range = Int(plan.layerStart[s * layers + l])..<Int(plan.layerStart[s * layers + l + 1])
                for a in range { current[Int(plan.accessExpert[a])] += Float(plan.accessTokens[a]) }
                guard !stored.isEmpty, l + 1 < layers, limit > 0 else { out.append([]); continue }
                // The least distance: the largest Σ over the later layers (summed from the last) of the cosines.
                var best = 0, bestScore = -Double.infinity
                for k in stored.indices {
                    var score = 0.0
                    for later in stride(from: layers - 1, to: l, by: -1) { score += cosine(current, stored[k].eam, row: later) }
                    if score > bestScore { best = k; bestScore = score }
                }
                stored[best].matches += 1
                // Every (layer, expert) after l by (count + 1e-8) x weight, descending; ties in layer-then-expert order.
                var ranking: [(priority: Float, id: Int32)] = []
                for later in (l + 1)..<layers {
                    let weight = Float(1 - Double(later - l) / Double(layers + 1))
                    for e in 0..<experts {
                        ranking.append(((stored[best].eam[later * experts + e] + 1e-8) * weight, Int32(later * experts + e)))
                    }
                }
                let sorted = ranking.enumerated().sorted { ($0.element.priority, -$0.offset) > ($1.element.priority, -$1.offset) }
                out.append(sorted.prefix(limit).map(\.element.id))
            }
        }
        return out
    }
}
