import Testing
@testable import MoESim

/// The step plan's two ways to form a layer's set: a step of one token sorts its ids in place, any other goes
/// through the union. Both must give the same plan, bit for bit.
struct PlanBuilderTests {
    /// The plan of `trace`'s sequential steps, with one-token steps sorted in place or through the union.
    private func sequentialPlan(_ trace: RoutingTrace, sortsLoneTokens: Bool, weights: Bool = true) -> StepPlan {
        var builder = StepPlanBuilder(trace, weights: weights)
        builder.sortsLoneTokens = sortsLoneTokens
        builder.addSequentialSteps()
        return StepPlan(builder)
    }

    private func expectSame(_ a: StepPlan, _ b: StepPlan) {
        #expect(a.layerStart == b.layerStart)
        #expect(a.accessExpert == b.accessExpert)
        #expect(a.accessTokens == b.accessTokens)
        #expect(a.accessWeightMax.map(\.bitPattern) == b.accessWeightMax.map(\.bitPattern))
        #expect(a.accessWeightSum.map(\.bitPattern) == b.accessWeightSum.map(\.bitPattern))
        #expect(a.totalWeight.bitPattern == b.totalWeight.bitPattern)
        #expect(a.largestWorkingSet() == b.largestWorkingSet())
        #expect(a.missingCells == b.missingCells)
        #expect(a.stepTokens == b.stepTokens)
    }

    @Test(arguments: propertySeeds(20))
    func loneTokensSortedInPlaceMatchTheUnion(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        // topK 1 to 10: insertion (up to 4, and above 8) and the sorting network (5 to 8).
        let trace = zipfTrace(seed: seed, layers: 1 + Int(rng.next() % 4), experts: 12 + Int(rng.next() % 300),
                              topK: 1 + Int(seed &* 7 % 10), tokens: 40, sequences: 3, prefill: Int(rng.next() % 5))
        let inPlace = sequentialPlan(trace, sortsLoneTokens: true)
        #expect(inPlace.steps > 0 && inPlace.accessExpert.count > 0)
        // The bound the page prefaulting uses: the steps exactly, the accesses from above; exact at decode.
        let bound = StepPlanBuilder.sequentialBound(trace)
        #expect(bound.steps == inPlace.steps && inPlace.accesses <= bound.accesses)
        let decode = zipfTrace(seed: seed, layers: 3, experts: 40, topK: 4, tokens: 30, sequences: 2, prefill: 0)
        #expect(StepPlanBuilder.sequentialBound(decode).accesses == sequentialPlan(decode, sortsLoneTokens: true).accesses)
        expectSame(inPlace, sequentialPlan(trace, sortsLoneTokens: false))
        expectSame(sequentialPlan(trace, sortsLoneTokens: true, weights: false),
                   sequentialPlan(trace, sortsLoneTokens: false, weights: false))
    }

    /// Repeated ids in one cell (a hand-made trace can hold them), null cells, and weights that sum differently in
    /// another order.
    @Test func repeatedIdsAndNullCellsAsTheUnionCountsThem() {
        var trace = makeTrace([[[3, 1, 3], nil], [[0, 2, 1], [2, 2, 2]], [[1, 0, 3], [0, 1, 2]]], experts: 4, topK: 3)
        var weighted = RoutingTrace(header: trace.header, name: "weighted")
        var record = TokenRecord(layers: 2, topK: 3)
        let weights: [Float] = [0.1, 0.7, 0.2, 0.3, 0.3, 0.4, 1e-8, 0.5, 0.49999, 0.6, 0.3, 0.1, 0.25, 0.5, 0.25, 0.2, 0.2, 0.6]
        for t in 0..<trace.tokenCount {
            record.seq = Int(trace.seq[t]); record.pos = Int(trace.pos[t]); record.phase = trace.phase[t]
            for i in 0..<6 { record.experts[i] = trace.experts[t * 6 + i] }
            record.weights = (0..<6).map { trace.experts[t * 6 + $0] == TokenRecord.missing ? .nan : weights[t * 6 + $0] }
            record.hasWeights = true
            weighted.append(record)
        }
        trace = weighted
        let inPlace = sequentialPlan(trace, sortsLoneTokens: true)
        expectSame(inPlace, sequentialPlan(trace, sortsLoneTokens: false))
        // Written out: token 0 layer 0 holds expert 3 twice (2 tokens, weights 0.1 and 0.2) and expert 1 once.
        #expect(Array(inPlace.accessExpert[0..<2]) == [1, 3])
        #expect(Array(inPlace.accessTokens[0..<2]) == [1, 2])
        #expect(inPlace.accessWeightMax[1] == 0.2 && inPlace.accessWeightSum[1] == Float(0) + 0.1 + 0.2)
        #expect(inPlace.missingCells == 1)
        // Six ids a cell (the sorting network), repeats included.
        let six = makeTrace([[[5, 1, 5, 0, 7, 1]], [[2, 3, 4, 5, 6, 7]], [[7, 7, 7, 7, 7, 7]]], experts: 8, topK: 6)
        expectSame(sequentialPlan(six, sortsLoneTokens: true), sequentialPlan(six, sortsLoneTokens: false))
        #expect(Array(sequentialPlan(six, sortsLoneTokens: true).accessTokens[0..<4]) == [1, 2, 2, 1])
    }
}

extension PlanBuilderTests {
    /// The sorting network of one-token steps of five to eight ids, on every 0-1 input (the 0-1 principle: a
    /// comparator network that sorts those sorts every input) and on every order of eight distinct keys' ranks
    /// in a sample.
    @Test func theEightKeyNetworkSorts() {
        let keys = UnsafeMutablePointer<UInt32>.allocate(capacity: 8)
        defer { keys.deallocate() }
        var unsorted = 0
        for bits in 0..<256 {
            for j in 0..<8 { keys[j] = UInt32((bits >> j) & 1) }
            StepScratch.sortEight(keys)
            if (1..<8).contains(where: { keys[$0 - 1] > keys[$0] }) { unsorted += 1 }
        }
        var rng = SplitMix64(seed: 8)
        for _ in 0..<500 {
            let values = (0..<8).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
            for j in 0..<8 { keys[j] = values[j] }
            StepScratch.sortEight(keys)
            if (0..<8).map({ keys[$0] }) != values.sorted() { unsorted += 1 }
        }
        #expect(unsorted == 0)
    }
}

extension PlanBuilderTests {
    /// A plan without per-access weights still sums them, and a strategy that reads them is refused on it rather
    /// than run without them.
    @Test func aPlanWithoutWeightsKeepsTheirSumAndRefusesAReader() throws {
        let trace = zipfTrace(seed: 4, layers: 2, experts: 16, topK: 2, tokens: 30)
        let with = StepPlan(trace), without = StepPlan(trace, weights: false)
        #expect(with.hasWeights && !without.hasWeights && without.recordsWeights)
        #expect(with.totalWeight == without.totalWeight && with.totalWeight > 0)
        let model = tinyModel(layers: 2, experts: 16, topK: 2)
        let lru = ReplaySpec(model: model, hardware: tinyHardware(), policy: .lru, budget: .share(0.5))
        #expect(try Replayer.run(plan: without, traceName: "t", spec: lru).counters
                == Replayer.run(plan: with, traceName: "t", spec: lru).counters)
        var reader = lru
        reader.policy = .mixedPrecision
        // Named as the plan's doing, not the trace's: the trace has weights.
        let refusal = #expect(throws: ConfigError.self) { try Replayer.run(plan: without, traceName: "t", spec: reader) }
        #expect(refusal?.description.contains("a step plan that keeps the gate weights") == true)
    }
}
