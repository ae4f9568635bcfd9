import Foundation
import Testing
@testable import MoESim

/// The baselines users run and papers compare against (issue 14, parts 2 and 4).
struct BaselineTests {
    /// MoE-Prefetch copies every expert of the next layer and cancels none: its bytes grow with the experts per
    /// layer, while on-demand's stay those of the experts used.
    @Test func prefetchAllMovesMoreBytesAsLayersHaveMoreExperts() throws {
        var moved: [Int] = []
        for experts in [8, 64, 128] {
            let trace = zipfTrace(seed: 3, layers: 4, experts: experts, topK: 1, tokens: 24, skew: 0)
            let model = tinyModel(layers: 4, experts: experts, topK: 1)
            let all = try replay(trace, model: model, policy: .prefetchAll, budget: .experts(2 * experts))
            let onDemand = try replay(trace, model: model, policy: .onDemand, budget: .experts(2))
            let p = all.counters.prefetch
            #expect(p.useful + p.late + p.wasted + p.cancelled == p.issued)
            #expect(p.bytesWasted == p.wasted * model.expertBytes)
            // Every started copy of a whole layer moves bytes: far more than the experts used.
            #expect(all.counters.bytesH2D > 4 * onDemand.counters.bytesH2D || experts == 8)
            #expect(all.counters.simNanoseconds > onDemand.counters.simNanoseconds)
            moved.append(all.counters.bytesH2D / model.expertBytes)
        }
        #expect(moved[0] < moved[1] && moved[1] < moved[2], "\(moved)")
    }

    /// A hand-worked MoE-Prefetch layer: one token, two layers of four experts, top-1. At layer 0's gate (2 µs)
    /// the demand copy of expert 1 and then the four copies of layer 1 (ids 4…7) queue on the link, 201 µs each; the
    /// copies keep their order, so layer 1's expert 6 waits for 4 and 5 to go first.
    @Test func prefetchAllCopiesKeepTheirOrder() throws {
        let trace = makeTrace([[[1], [2]]], experts: 4, topK: 1)  // layer 1's expert 2 is flat id 6
        var log = EventLog()
        let spec = ReplaySpec(model: tinyModel(layers: 2, experts: 4, topK: 1), hardware: tinyHardware(), policy: .prefetchAll,
                              budget: .experts(8))
        let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec, sink: &log)
        let events = log.drain()
        let copies = events.compactMap { e -> (Int, Int64)? in if case let .copyEnd(x) = e.event { (x, e.time.nanoseconds) } else { nil } }
        // Demand copy of 1 lands at 203 µs; 4, 5, 6 at 404, 605 and 806 µs.
        #expect(copies.prefix(4).map { $0.0 } == [1, 4, 5, 6])
        #expect(copies.prefix(4).map { $0.1 } == [203_000, 404_000, 605_000, 806_000])
        // Layer 0 ends at 203 + 3 µs = 206 µs; layer 1's gate at 208 µs waits for expert 6 until 806 µs: ends 809 µs.
        #expect(r.counters.simNanoseconds == 809_000)
        // 4, 5 and 7 (started at 806 µs, before the run ended) moved unused: wasted; layer 0's 0, 2, 3 (proposed at
        // layer 1 for the next token) were still queued when the run ended: never sent, counted cancelled.
        let p = r.counters.prefetch
        #expect(p.late == 1 && p.wasted == 3 && p.cancelled == 3 && p.issued == 7, "\(p)")
    }

    static let seeds: [UInt64] = propertySeeds(10)

    func spec(_ policy: PolicyKind, model: ModelProfile, budget: Budget, rest: PlacementOptions.Rest = .demand,
              trainSplit: Double = 0.5, cpuLayers: Int? = nil) -> ReplaySpec {
        var spec = ReplaySpec(model: model, hardware: tinyHardware(), policy: policy, budget: budget)
        spec.placement.rest = rest
        spec.placement.trainSplit = trainSplit
        spec.placement.cpuLayers = cpuLayers
        return spec
    }

    /// With every expert's room and misses on the CPU, the test part's hits are exactly its accesses to experts the
    /// training part used (counted here from the split's tokens, not by the replay): nothing counted only in the test
    /// part is ever placed.
    @Test(arguments: seeds)
    func staticFrequencyPlacesOnlyWhatTheTrainingPartUsed(seed: UInt64) throws {
        // Many experts and few tokens, so that the test part routes to experts the training part never saw.
        let trace = zipfTrace(seed: seed, layers: 3, experts: 64, topK: 2, tokens: 40, skew: 0, sequences: 4)
        let model = tinyModel(layers: 3, experts: 64, topK: 2)
        for share in [0.25, 0.5, 0.75] {
            let (train, test) = try trace.split(trainShare: share)
            var used = Set<Int>()
            for t in 0..<train.tokenCount {
                for l in 0..<3 { for id in train.expertIDs(token: t, layer: l) ?? [] { used.insert(l * 64 + Int(id)) } }
            }
            let testPlan = StepPlan(test)
            let expectedHits = testPlan.accessExpert.filter { used.contains(Int($0)) }.count
            #expect(expectedHits < testPlan.accesses)  // the case this test is about
            let r = try Replayer.replay(trace: trace, plan: StepPlan(trace), spec: spec(.staticFrequency, model: model,
                                                                                       budget: .share(1), rest: .cpu, trainSplit: share))
            #expect(r.tokens == test.tokenCount && r.trainPart?.tokens == train.tokenCount)
            #expect(r.counters.hits == expectedHits, "seed \(seed) share \(share)")
            #expect(r.counters.cpuExperts == testPlan.accesses - expectedHits && r.counters.bytesH2D == 0)
            #expect(r.trainPart?.hitRate == 1.0)  // in-sample, every expert used was placed
        }
    }

    /// A hand-made split: the first sequence uses experts 0 and 1, the second 2 and 3. Learnt on the first, the
    /// placement holds nothing the second needs.
    @Test func aHotSetLearntOnOneWorkloadMissesAnother() throws {
        let trace = makeTrace([[[0], [1]], [[1], [0]], [[2], [3]], [[3], [2]]], experts: 4, topK: 1, seqs: [0, 0, 1, 1])
        let r = try Replayer.replay(trace: trace, plan: StepPlan(trace), spec: spec(.staticFrequency, model: tinyModel(experts: 4, topK: 1),
                                                                                   budget: .experts(8), rest: .cpu))
        // Room for all eight experts, yet only the four the first sequence used are placed.
        #expect(r.counters.hits == 0 && r.counters.cpuExperts == 4)
        #expect(r.trainPart?.hitRate == 1.0 && r.trainPart?.share == 0.5)
    }

    @Test func trainSplitOutsideZeroOneIsRefused() throws {
        var p = PlacementOptions()
        for bad in ["0", "1", "1.5", "-0.2", "half"] {
            #expect(throws: ConfigError.self, "\(bad)") { try p.set("train_split", to: bad, origin: "--train-split") }
        }
        try p.set("train_split", to: "0.3", origin: "test")
        #expect(p.trainSplit == 0.3)
        #expect(throws: ConfigError.self) { try p.set("rest", to: "gpu", origin: "test") }
        // A trace of one sequence cannot be split.
        let one = makeTrace([[[0], [1]]], experts: 4, topK: 1)
        #expect(throws: ConfigError.self) {
            try Replayer.replay(trace: one, plan: StepPlan(one), spec: spec(.staticFrequency, model: tinyModel(experts: 4, topK: 1),
                                                                             budget: .experts(2)))
        }
    }

    /// The placed experts never leave, whatever the misses copied in on demand do.
    @Test(arguments: seeds)
    func placedExpertsAreNeverEvicted(seed: UInt64) throws {
        let trace = zipfTrace(seed: seed, layers: 3, experts: 16, topK: 2, tokens: 60, skew: 0.5)
        let model = tinyModel(layers: 3, experts: 16, topK: 2)
        for policy in [PolicyKind.staticFrequency, .nCpuMoe] {
            var log = EventLog()
            _ = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec(policy, model: model, budget: .experts(12), cpuLayers: 1),
                                 sink: &log)
            let events = log.drain()
            let placed = Set(events.compactMap { e -> Int? in if case let .preload(x) = e.event { x } else { nil } })
            let evicted = Set(events.compactMap { e -> Int? in if case let .evict(x) = e.event { x } else { nil } })
            #expect(!placed.isEmpty && placed.isDisjoint(with: evicted), "\(policy) seed \(seed)")
        }
    }

    /// The same served in batches of 6: a batch's union of a layer (up to 12 experts) outgrows the room left beside
    /// the placement (sized by one token's working set), so layers stream, and still no placed expert leaves.
    @Test(arguments: seeds)
    func placedExpertsAreNeverEvictedInABatch(seed: UInt64) throws {
        let trace = zipfTrace(seed: seed, layers: 3, experts: 16, topK: 2, tokens: 96, skew: 0.5, sequences: 12)
        let model = tinyModel(layers: 3, experts: 16, topK: 2)
        for policy in [PolicyKind.staticFrequency, .nCpuMoe] {
            var batched = spec(policy, model: model, budget: .experts(12), cpuLayers: 1)
            batched.serving.scheduler = .static
            batched.serving.batch = 6
            var log = EventLog()
            _ = try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: batched, sink: &log)
            let events = log.drain()
            let placed = Set(events.compactMap { e -> Int? in if case let .preload(x) = e.event { x } else { nil } })
            let evicted = Set(events.compactMap { e -> Int? in if case let .evict(x) = e.event { x } else { nil } })
            #expect(!placed.isEmpty && placed.isDisjoint(with: evicted), "\(policy) seed \(seed)")
        }
    }

    /// llama.cpp's split: with room for two of four layers, the first two layers' experts run on the CPU and the
    /// last two's are all on the GPU; counts from the plan, by layer.
    @Test(arguments: seeds)
    func nCpuMoeRunsTheFirstLayersOnTheCPU(seed: UInt64) throws {
        let trace = zipfTrace(seed: seed, layers: 4, experts: 8, topK: 2, tokens: 40)
        let model = tinyModel(layers: 4, experts: 8, topK: 2)
        let plan = StepPlan(trace)
        func accesses(inLayers layers: Range<Int>) -> Int { plan.accessExpert.filter { layers.contains(Int($0) / 8) }.count }
        let auto = try Replayer.replay(trace: trace, plan: plan, spec: spec(.nCpuMoe, model: model, budget: .experts(16)))
        #expect(auto.counters.cpuExperts == accesses(inLayers: 0..<2) && auto.counters.hits == accesses(inLayers: 2..<4))
        #expect(auto.counters.bytesH2D == 0)
        #expect(Metric.cpuLayers.cell(auto) == "2")
        let three = try Replayer.replay(trace: trace, plan: plan, spec: spec(.nCpuMoe, model: model, budget: .experts(16), cpuLayers: 3))
        #expect(three.counters.cpuExperts == accesses(inLayers: 0..<3) && three.counters.hits == accesses(inLayers: 3..<4))
        // Too small a budget for the GPU layers: the rest is copied on demand through the room left.
        let tight = try Replayer.replay(trace: trace, plan: plan, spec: spec(.nCpuMoe, model: model, budget: .experts(6), cpuLayers: 2))
        #expect(tight.counters.cpuExperts == accesses(inLayers: 0..<2) && tight.counters.bytesH2D > 0)
        let onCPU = try Replayer.replay(trace: trace, plan: plan, spec: spec(.nCpuMoe, model: model, budget: .experts(6), rest: .cpu, cpuLayers: 2))
        #expect(onCPU.counters.bytesH2D == 0 && onCPU.counters.hits + onCPU.counters.cpuExperts == plan.accesses)
    }
}
