import Foundation
import Testing
@testable import MoESim

/// Batched serving on several GPUs (docs/multigpu.md, docs/simulation.md "Several GPUs"): a hand-worked batch whose
/// sequences live on different GPUs, batch 1 equal to the trace's order over seeds and maps, KV cache per GPU.
@Suite struct MultiGPUServingTests {
    /// tinyModel whose every cached token holds 1,000 B of KV cache a layer (10 ns of attention at 1e11 B/s).
    static func kvModel(layers: Int, experts: Int, topK: Int) -> ModelProfile {
        var model = tinyModel(layers: layers, experts: experts, topK: topK)
        model.kvCacheDim = 1000
        model.kvBytesPerValue = 1
        return model
    }

    /// One layer of 4 experts on `gpus` GPUs (round-robin, two experts' budget each), the trace served in one static
    /// batch of its requests.
    static func batchOnGPUs(_ trace: RoutingTrace, gpus: Int, topK: Int) throws -> (ReplayResult, ServingLog) {
        var spec = MultiGPUTests.spec(kvModel(layers: 1, experts: 4, topK: topK), MultiGPUTests.gpus(gpus), budget: .experts(2))
        spec.serving = serving(.static, batch: trace.sequenceCount)
        return try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec)
    }

    static func serving(_ scheduler: ServingOptions.Scheduler, batch: Int = 1, maxSeqs: Int = 16) -> ServingOptions {
        var o = ServingOptions()
        o.scheduler = scheduler
        o.batch = batch
        o.maxSeqs = maxSeqs
        return o
    }

    /// One layer of 4 experts, top-1, round-robin on two GPUs (0 and 2 on GPU 0, 1 and 3 on GPU 1), two experts'
    /// budget per GPU; two one-token requests in one static batch: sequence 0 (on GPU 0) routes to expert 1, sequence
    /// 1 (on GPU 1) to expert 0. Each cached token holds 1,000 B of KV cache a layer: 10 ns of attention at 1e11 B/s.
    /// - Non-expert part: each GPU its own sequence's token, 2 µs + 10 ns (one GPU for the batch: 2 µs + 20 ns).
    /// - Dispatch: GPU 0 sends one token and receives one, so does GPU 1: 1 µs + 200 B / 1 GB/s = 1.2 µs (two
    ///   tokens from one GPU would take 1.4 µs). Gate at 3.21 µs.
    /// - Each GPU copies its expert (201 µs, to 204.21) and computes it (3 µs, to 207.21); the combine, again one
    ///   token each way per GPU, ends the step at 208.41 µs.
    @Test func aBatchWhoseSequencesLiveOnTwoGPUsByHand() throws {
        let (r, log) = try Self.batchOnGPUs(makeTrace([[[1]], [[0]]], experts: 4, topK: 1, seqs: [0, 1]), gpus: 2, topK: 1)
        #expect(r.counters.simNanoseconds == 208_410)
        #expect(r.counters.firstStepLatencies == [208_410, 208_410])
        #expect(log.firstToken == [208_410, 208_410] && log.finish == [208_410, 208_410])
        #expect((r.counters.accesses, r.counters.hits, r.counters.misses) == (2, 0, 2))
        let m = try #require(r.multiGPU)
        #expect(m.allToAllBytes == 800 && m.crossShare == 1)
        #expect(m.imbalanceMean == 1 && m.imbalanceP99 == 1)
        #expect(r.serving?.requests == 2)
    }

    /// Both sequences on GPU 0 (sequences 0 and 2), routing to experts 1 and 3 on GPU 1: GPU 0 sends both tokens
    /// (1.4 µs each way) and computes both tokens' attention (2 µs + 20 ns). Gate at 3.42 µs; GPU 1 copies 1 and 3
    /// on one link (the second lands 201 µs after the first: 405.42), computing each as it lands (1 at 204.42 to
    /// 207.42; 3 at 405.42 to 408.42); the combine ends the step at 409.82 µs.
    @Test func aBatchOnOneGPUSendsFromThere() throws {
        let r = try Self.batchOnGPUs(makeTrace([[[1]], [[3]]], experts: 4, topK: 1, seqs: [0, 2]), gpus: 2, topK: 1).0
        #expect(r.counters.simNanoseconds == 409_820)
        #expect(r.multiGPU?.imbalanceMean == 2)
    }

    /// Three GPUs (experts 0, 3 on GPU 0; 1 on GPU 1; 2 on GPU 2), one layer, budget two experts per GPU, one static
    /// batch of two one-token requests (each GPU's attention 2 µs + 10 ns):
    /// - *receiving*: sequences 0 and 1 (GPUs 0 and 1) both route to expert 2: GPU 2 receives two tokens (1.4 µs),
    ///   though each GPU sends one. Gate at 3.41 µs; GPU 2 copies 2 (to 204.41) and computes both tokens (3 µs, to
    ///   207.41); it sends both back (1.4 µs): 208.81 µs.
    /// - *sending*: sequence 0's token routes to experts 1 and 2 (top-2) and sequence 1's to 0 and 1: GPU 0 sends
    ///   one token to each of GPUs 1 and 2 (two), GPU 1 sends one to GPU 0 and receives one: 1.4 µs. Gate at 3.41 µs;
    ///   every GPU copies one expert (to 204.41) and computes it (to 207.41); GPU 0 receives two outputs back: 208.81.
    @Test(arguments: [([[[2]], [[2]]], 1), ([[[1, 2]], [[0, 1]]], 2)])
    func theBusiestGPUSetsTheAllToAll(routes: [[[Int]?]], topK: Int) throws {
        let r = try Self.batchOnGPUs(makeTrace(routes, experts: 4, topK: topK, seqs: [0, 1]), gpus: 3, topK: topK).0
        #expect(r.counters.simNanoseconds == 208_810)
    }

    /// Over seeds, maps, token locations and strategies (an oracle among them, which replays a first pass's order):
    /// a static batch of one on G GPUs is the replay of the trace's order on G GPUs, on every counter and every
    /// multi-GPU figure.
    @Test(arguments: [ExpertMap.Kind.roundRobin, .replicated, .affinity, .balancedComm])
    func batchOneIsTheTracesOrder(kind: ExpertMap.Kind) throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        for seed in propertySeeds(3) {
            let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 48, sequences: 4)
            let plan = StepPlan(trace)
            for (g, policy) in [(2, PolicyKind.lru), (3, .pregated), (4, .belady), (2, .cpuFallback)] {
                for location in [PlacementOptions.TokenLocation.sequence, .expert] {
                    var spec = MultiGPUTests.spec(model, MultiGPUTests.gpus(g), policy, budget: .experts(4), map: kind,
                                                  redundant: kind == .replicated ? 3 : 0)
                    spec.placement.tokenLocation = location
                    let ordered = try Replayer.run(plan: plan, traceName: "t", spec: spec)
                    spec.serving = Self.serving(.static, batch: 1)
                    let served = try Replayer.serve(trace: trace, plan: plan, spec: spec).result
                    let what = "seed \(seed), \(g) GPUs, \(policy), \(location)"
                    var counters = served.counters
                    counters.firstStepStart = ordered.counters.firstStepStart
                    #expect(counters == ordered.counters, "\(what)")
                    #expect(served.multiGPU == ordered.multiGPU, "\(what)")
                }
            }
        }
    }

    /// With every expert resident and an interconnect that costs nothing, serving continuous batches on G GPUs is
    /// never slower than on one: each GPU computes its own sequences' attention and a part of the experts.
    @Test func servingOnMoreGPUsIsNeverSlowerWhenNothingMisses() throws {
        let model = Self.kvModel(layers: 3, experts: 8, topK: 2)
        for seed in propertySeeds(4) {
            let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 60, sequences: 6)
            let plan = StepPlan(trace)
            var spec = MultiGPUTests.spec(model, tinyHardware(), .allResident, budget: .experts(24))
            spec.serving = Self.serving(.continuous, maxSeqs: 4)
            let one = try Replayer.serve(trace: trace, plan: plan, spec: spec).result
            for g in [2, 3] {
                spec.hardware = MultiGPUTests.gpus(g, rate: 1e30, latency: 0)
                let many = try Replayer.serve(trace: trace, plan: plan, spec: spec).result
                #expect(many.counters.simNanoseconds <= one.counters.simNanoseconds, "seed \(seed), \(g) GPUs")
                #expect(many.serving?.requests == one.serving?.requests)
                #expect(many.multiGPU.map { (0...1).contains($0.crossShare) && $0.imbalanceMean >= 1 } == true)
            }
        }
    }

    /// Each GPU holds the KV cache of its own sequences (seq mod G), with the room of one: four one-token requests
    /// whose contexts fill a GPU's room each run one at a time on one GPU, two at a time on two (sequences 0 and 1,
    /// then 2 and 3).
    @Test func eachGPUHoldsItsOwnSequencesKVCache() throws {
        let trace = makeTrace([[[0]], [[1]], [[2]], [[3]]], experts: 4, topK: 1, seqs: [0, 1, 2, 3])
        for (pools, batches) in [(1, [[0], [1], [2], [3]]), (2, [[0, 1], [2, 3]])] {
            let scheduler = try ServingScheduler(trace: trace, options: Self.serving(.continuous, maxSeqs: 4),
                                                 kvRoomTokens: 1, kvPools: pools)
            var now: Int64 = 0
            while try scheduler.next(at: now) != nil { now += 1 }
            #expect(scheduler.steps.map(\.members) == batches, "\(pools) GPUs")
        }
    }
}

/// Memory tiers under several GPUs (docs/multigpu.md): each GPU its own host memory and SSD below it.
@Suite struct MultiGPUTierTests {
    /// Host memory that holds every expert of each GPU over an infinitely fast SSD is two tiers, on every column
    /// two tiers report, over seeds, maps, GPU counts and strategies; no expert is read from the SSD.
    @Test(arguments: [ExpertMap.Kind.roundRobin, .replicated])
    func aFullHostTierEqualsTwoTiersOnEveryGPU(kind: ExpertMap.Kind) throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        for seed in propertySeeds(3) {
            let plan = StepPlan(zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 40, sequences: 3))
            for g in [2, 3] {
                var full = TierTests.threeTiers(hostExperts: 24)
                full.tiers.ssdBytesPerSecond = 1e30
                full.gpus = g
                full.interconnectBytesPerSecond = 1e9
                for policy in [PolicyKind.lru, .pregated, .cpuFallback, .moeInfinity] {
                    let redundant = kind == .replicated ? 2 : 0
                    var hw = tinyHardware()
                    hw.gpus = g
                    hw.interconnectBytesPerSecond = 1e9
                    let two = try Replayer.run(plan: plan, traceName: "t",
                                               spec: MultiGPUTests.spec(model, hw, policy, budget: .experts(3), map: kind, redundant: redundant))
                    let three = try Replayer.run(plan: plan, traceName: "t",
                                                 spec: MultiGPUTests.spec(model, full, policy, budget: .experts(3), map: kind, redundant: redundant))
                    let what = "\(policy), seed \(seed), \(g) GPUs"
                    #expect(Metric.row(two, [.gpus]) == Metric.row(three, [.gpus]), "\(what)")
                    #expect(three.counters.tiers?.reads == 0, "\(what)")
                }
            }
        }
    }

    /// Each GPU's host memory starts with the experts its map gives it: two layers of four experts round-robin on
    /// two GPUs (four each), host memory for four experts per GPU: nothing is ever read from the SSD. (Filled in
    /// flat-id order over every expert, GPU 0's host memory would hold layer 0 whole and miss its layer-1 experts.)
    @Test func eachGPUsHostMemoryStartsWithItsOwnExperts() throws {
        let model = tinyModel(layers: 2, experts: 4, topK: 2)
        var hw = TierTests.threeTiers(hostExperts: 4)
        hw.gpus = 2
        hw.interconnectBytesPerSecond = 1e9
        for seed in propertySeeds(3) {
            let plan = StepPlan(zipfTrace(seed: seed, layers: 2, experts: 4, topK: 2, tokens: 30))
            let r = try Replayer.run(plan: plan, traceName: "t", spec: MultiGPUTests.spec(model, hw, budget: .experts(1)))
            let t = try #require(r.counters.tiers)
            #expect(t.reads == 0 && t.misses == 0 && t.hits > 0, "seed \(seed)")
        }
    }

    /// Over seeds and GPU counts, with host memory for two experts per GPU: each GPU's host memory within its
    /// capacity, bytes read the reads' experts, and every GPU copy or host computation a host hit, miss or late.
    @Test func eachGPUsTiersKeepTheirBounds() throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        for seed in propertySeeds(4) {
            let plan = StepPlan(zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 40, sequences: 3))
            for g in [2, 4] {
                var hw = TierTests.threeTiers(hostExperts: 2, queueDepth: 2)
                hw.gpus = g
                hw.interconnectBytesPerSecond = 1e9
                for policy in [PolicyKind.lru, .pregated] {
                    let r = try Replayer.run(plan: plan, traceName: "t", spec: MultiGPUTests.spec(model, hw, policy, budget: .experts(2)))
                    let t = try #require(r.counters.tiers)
                    let what = "\(policy), seed \(seed), \(g) GPUs"
                    #expect(t.peakBytes <= t.capacityBytes && t.capacityBytes == 2 * model.expertBytes, "\(what)")
                    #expect(t.bytesRead == t.reads * model.expertBytes && t.reads > 0, "\(what)")
                    #expect(t.hits + t.misses + t.late >= r.counters.misses, "\(what)")
                }
            }
        }
    }
}

/// The all-to-all's two ways to one rule: a step of one group (the trace's order) takes a shortcut through its hub
/// GPU; split into groups on the same GPU it goes through every GPU's tallies. Over random loads, GPU counts and
/// node sizes both give the same durations, imbalance, routes and bytes.
@Suite struct AllToAllTests {
    @Test func oneGroupEqualsItsTokensSplitIntoGroupsOnTheSameGPU() {
        var rng = SplitMix64(seed: 7)
        for (gpus, perNode) in [(2, 0), (3, 0), (4, 2), (8, 4), (8, 0)] {
            var hw = MultiGPUTests.gpus(gpus)
            hw.gpusPerNode = perNode
            hw.internodeBytesPerSecond = 3e8
            let spec = MultiGPUTests.spec(tinyModel(), hw, budget: .experts(2))
            let whole = AllToAll(gpus: gpus, spec: spec), split = AllToAll(gpus: gpus, spec: spec)
            let one = TokenGroups(gpus: gpus, capacity: 1), two = TokenGroups(gpus: gpus, capacity: 2)
            for _ in 0..<200 {
                let at = Int(rng.next() % UInt64(gpus))
                one.start(count: 1); one.place(0, home: at, single: false)
                two.start(count: 2); two.place(0, home: at, single: false); two.place(1, home: at, single: false)
                one.clearLoads(); two.clearLoads()
                for g in 0..<gpus {
                    let n = Int(rng.next() % 4), first = Int(rng.next() % UInt64(n + 1))
                    one.load[g] = n; two.load[g] = first; two.load[gpus + g] = n - first
                }
                whole.addLayer(one, last: false); split.addLayer(two, last: false)
            }
            #expect(whole.dispatch == split.dispatch && whole.combine == split.combine, "\(gpus) GPUs, nodes of \(perNode)")
            #expect(whole.imbalance == split.imbalance && whole.bytes == split.bytes, "\(gpus) GPUs, nodes of \(perNode)")
            #expect(whole.routes == split.routes && whole.crossingRoutes == split.crossingRoutes)
            #expect(whole.dispatch.contains { $0 > 0 })
        }
    }
}

/// Several GPUs against one faster GPU, where the two must agree exactly.
@Suite struct MultiGPUScalingTests {
    /// Every expert on every GPU (EPLB with E (G − 1) redundant replicas per layer), all resident, an interconnect
    /// that costs nothing, no non-expert part or launch cost, experts compute-bound (1 ns a token at 2e14 FLOP/s),
    /// and steps whose tokens route alike in numbers that G divides: each GPU computes 1/G of every expert's tokens,
    /// so G GPUs take exactly as long as one GPU with G times the FLOP/s, step by step, over seeds, but for the
    /// interconnect: a positive duration lasts at least 1 ns (docs/simulation.md, "Time"), so the dispatch and the
    /// combine add 2 ns to every layer (tokens cross to the other replicas at every layer).
    @Test(arguments: [2, 4])
    func everyExpertEverywhereIsOneGPUGTimesAsFast(gpus: Int) throws {
        let model = ModelProfile(name: "flat", layers: 3, experts: 8, topK: 2, hidden: 100, expertFFN: 500, matrices: 2,
                                 nonExpertParamsPerLayer: 0)
        var fast = tinyHardware()
        fast.gpuFlops = 2e14
        fast.hbmBytesPerSecond = 1e30
        fast.kernelLaunchSeconds = 0
        var many = fast
        many.gpus = gpus
        many.interconnectBytesPerSecond = 1e30
        many.interconnectLatencySeconds = 0
        var one = fast
        one.gpuFlops = 2e14 * Double(gpus)
        for seed in propertySeeds(5) {
            var rng = SplitMix64(seed: seed)
            var tokens: [[[Int]?]] = [], seqs: [Int] = []
            for seq in 0..<6 {
                let routes = (0..<3).map { _ -> [Int] in
                    let first = Int(rng.next() % 8)
                    return [first, (first + 1 + Int(rng.next() % 7)) % 8]
                }
                let n = gpus * (1 + Int(rng.next() % 3))
                tokens += Array(repeating: routes.map { Optional($0) }, count: n)
                seqs += Array(repeating: seq, count: n)
            }
            let trace = makeTrace(tokens, experts: 8, topK: 2, phases: Array(repeating: .prefill, count: tokens.count), seqs: seqs)
            let plan = StepPlan(trace)
            let g = try Replayer.run(plan: plan, traceName: "t", spec: MultiGPUTests.spec(model, many, .allResident, budget: .experts(24),
                                                                                      map: .replicated, redundant: 8 * (gpus - 1)))
            let o = try Replayer.run(plan: plan, traceName: "t", spec: MultiGPUTests.spec(model, one, .allResident, budget: .experts(24)))
            let interconnect = Int64(2 * model.layers)  // per step
            #expect(g.counters.simNanoseconds == o.counters.simNanoseconds + interconnect * Int64(plan.steps) && o.counters.simNanoseconds > 0,
                    "seed \(seed)")
            #expect(g.counters.firstStepLatencies == o.counters.firstStepLatencies.map { $0 + interconnect }, "seed \(seed)")
            #expect(g.multiGPU?.imbalanceMean == 1 && g.multiGPU?.crossShare ?? 0 > 0, "seed \(seed)")
        }
    }
}
