import Foundation
import Testing
@testable import MoESim

/// Attention over the context and the KV cache (docs/serving.md, "Attention and the KV cache"): the work a step's
/// positions imply, its cost hand-worked in both regimes, KV admission under a GPU that holds only so much, and the
/// errors for a request that can never fit.
@Suite struct AttentionKVTests {
    /// 2 layers of 4 experts, top-1; experts of 2,000 parameters (4,000 bytes), no other weights; attention with 2
    /// query heads, 1 KV head of width 1: 8 FLOPs per (query, key) pair, 4 bytes of KV cache per token and layer.
    func attentionModel(attention: ModelProfile.Attention = .init(heads: 2, kvHeads: 1, headDim: 1)) -> ModelProfile {
        ModelProfile(name: "attn", layers: 2, experts: 4, topK: 1, hidden: 1, expertFFN: 1000, matrices: 2,
                     nonExpertParamsPerLayer: 0, attention: attention)
    }

    /// 16 GFLOP/s and 4 GB/s of HBM: a pair costs 0.5 ns, a token of KV cache read 1 ns, an expert
    /// max(250 ns × tokens, 1,000 ns); no launch cost. `kvRoom` bytes of GPU memory beyond 8 experts.
    func slowGPU(kvRoom: Double = 1e9) -> HardwareProfile {
        HardwareProfile(name: "slow-gpu", gpuMemoryBytes: 32_000 + kvRoom, hbmBytesPerSecond: 4e9, gpuFlops: 16e9,
                        linkBytesPerSecond: 1e9, linkLatencySeconds: 1e-6, kernelLaunchSeconds: 0)
    }

    @Test func aStepsAttentionComesFromItsPositions() {
        // Sequence 0: tokens 0-5 (positions 0-5); sequence 1: tokens 6-13 (positions 0-7).
        let trace = makeTrace(Array(repeating: [[0]], count: 14), experts: 4, topK: 1,
                              seqs: Array(repeating: 0, count: 6) + Array(repeating: 1, count: 8))
        var builder = StepPlanBuilder(trace)
        builder.addStep([3..<6, 13..<14], phase: .decode, seq: 0, firstSteps: 0, laterOutputs: 1)
        builder.addStep([0..<1], phase: .decode, seq: 0, firstSteps: 1, laterOutputs: 0, kvHeld: 40)
        let plan = StepPlan(builder)
        // Positions 3, 4, 5 attend to 4 + 5 + 6 keys, position 7 to 8; each part reads its sequence's cache once.
        #expect(plan.stepAttention[0] == StepAttention(pairs: 23, kvRead: 14, kvHeld: 14))
        #expect(plan.stepAttention[1] == StepAttention(pairs: 1, kvRead: 1, kvHeld: 40))
    }

    /// One request: 8 prompt tokens (all to expert 0 in layer 0 and expert 3 in layer 1), then 2 output tokens.
    func oneRequest() -> RoutingTrace {
        makeTrace(Array(repeating: [[0], [3]], count: 8) + [[[1], [2]], [[1], [2]]], experts: 4, topK: 1,
                  phases: Array(repeating: .prefill, count: 8) + [.decode, .decode])
    }

    @Test func attentionIsComputeBoundInAPrefillAndMemoryBoundAtDecode() throws {
        let trace = oneRequest()
        var spec = ReplaySpec(model: attentionModel(), hardware: slowGPU(), policy: .allResident, budget: .experts(8))
        let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec)
        // Prefill: 36 pairs = 18 ns against 8 tokens read = 8 ns, and 8 tokens on one expert = 2,000 ns, per layer:
        // 2 × 2,018. Position 8: 9 pairs = 4.5 ns against 9 tokens read = 9 ns, one token = 1,000 ns: 2 × 1,009.
        // Position 9: 2 × 1,010.
        #expect(r.counters.simNanoseconds == 4_036 + 2_018 + 2_020)
        #expect(r.counters.firstStepLatencies == [4_036] && r.counters.decodeStepLatencies == [2_018, 2_020])
        // 10 tokens of context × 4 bytes × 2 layers.
        #expect(Metric.peakKVBytes.cell(r) == "80")

        spec.model = attentionModel(attention: .none)
        let without = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec)
        #expect(without.counters.simNanoseconds == 8_000 && Metric.peakKVBytes.cell(without) == "0")
    }

    @Test func multiHeadLatentAttentionCachesItsCompressedVector() throws {
        let v3 = try ModelProfile.preset("deepseek-v3"), mixtral = try ModelProfile.preset("mixtral-8x7b")
        // 512 + 64 values per token and layer in bf16 over 58 layers; Mixtral: a key and a value of 8 heads × 128.
        #expect(v3.kvBytesPerToken == 576 * 2 * 58)
        #expect(mixtral.kvBytesPerToken == 2 * 8 * 128 * 2 * 32)
    }

    /// Two requests of 3 tokens each (1 prompt, 2 output), both there at once, continuous batching of up to 2.
    func twoRequests() -> RoutingTrace {
        makeTrace([[[0], [1]], [[1], [2]], [[2], [3]], [[3], [0]], [[0], [1]], [[1], [2]]], experts: 4, topK: 1,
                  phases: [.prefill, .decode, .decode, .prefill, .decode, .decode], seqs: [0, 0, 0, 1, 1, 1])
    }

    func served(kvRoom: Double) throws -> (result: ReplayResult, log: ServingLog) {
        let trace = twoRequests()
        var spec = ReplaySpec(model: attentionModel(), hardware: slowGPU(kvRoom: kvRoom), policy: .lru, budget: .experts(8))
        spec.serving.scheduler = .continuous
        spec.serving.maxSeqs = 2
        return try Replayer.serve(trace: trace, plan: StepPlan(trace), spec: spec)
    }

    @Test func aRequestWaitsUntilItsKVCacheFits() throws {
        // Each request needs 3 tokens × 8 bytes (2 layers). Room for 6 tokens: both run together.
        let both = try served(kvRoom: 48)
        #expect(both.log.start == [0, 0] && both.result.serving?.meanBatch == 2)
        #expect(Metric.peakKVBytes.cell(both.result) == "48")
        // Room for 5: the second waits for the first to finish and free its room.
        let one = try served(kvRoom: 40)
        #expect(one.log.start[0] == 0 && one.log.start[1] == one.log.finish[0] && one.log.finish[0] > 0)
        #expect(one.result.serving?.meanBatch == 1 && Metric.peakKVBytes.cell(one.result) == "24")
    }

    @Test func aRequestWhoseKVCacheCannotFitIsRefusedNamingIt() throws {
        #expect(throws: ConfigError.self) { try served(kvRoom: 16) }
        do { _ = try served(kvRoom: 16) } catch {
            let message = "\(error)"
            #expect(message.contains("sequence 0 needs 24 B of KV cache") && message.contains("16 B left"), "\(message)")
        }
        // The scheduler refuses it too, for a room given directly.
        var options = ServingOptions()
        options.scheduler = .continuous
        #expect(throws: ConfigError.self) { try ServingScheduler(trace: twoRequests(), options: options, kvRoomTokens: 2) }
    }

    @Test func kvHeadsBeyondAttentionHeadsAreRefused() throws {
        var model = try ModelProfile.preset("mixtral-8x7b")
        try model.set("kv_heads", to: "64", origin: "--set")
        #expect(throws: ConfigError.self) { try model.validate() }
        do { try model.validate() } catch { #expect("\(error)".contains("model.kv_heads")) }
        #expect(throws: (any Error).self) { try model.set("head_dim", to: "-1", origin: "--set") }
    }

    /// Attention only adds work: for every strategy, over seeds, a run with attention is never faster than the same
    /// run without, and its peak KV cache is the longest sequence's.
    @Test func attentionNeverSpeedsARunUp() throws {
        for seed in propertySeeds(12, from: 0) {
            let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 60, sequences: 3, prefill: 5)
            let plan = StepPlan(trace)
            for policy in PolicyKind.allCases where !policy.readsGateWeights {
                var spec = ReplaySpec(model: attentionModel(attention: .none), hardware: slowGPU(), policy: policy,
                                      budget: .experts(6))
                spec.model.layers = 3; spec.model.experts = 8; spec.model.topK = 2
                let without = try Replayer.run(plan: plan, traceName: "t", spec: spec)
                spec.model.attentionHeads = 64; spec.model.kvHeads = 8; spec.model.headDim = 128
                let with = try Replayer.run(plan: plan, traceName: "t", spec: spec)
                #expect(with.counters.simNanoseconds > without.counters.simNanoseconds, "seed \(seed) \(policy)")
                let longest = (0..<trace.tokenCount).map { Int(trace.pos[$0]) + 1 }.max()!
                #expect(with.counters.peakKVTokens == Int64(longest), "seed \(seed) \(policy)")
            }
        }
    }

    /// Over seeds, schedulers and rooms: the KV cache held never exceeds the room, every request is served, and a
    /// room for everything changes nothing.
    @Test func theKVCacheHeldNeverExceedsTheRoom() throws {
        let serving = ServingTests()
        for seed in propertySeeds(40, from: 0) {
            var rng = SplitMix64(seed: seed &* 104_729)
            let trace = serving.requestTrace(seed: seed, requests: 2 + rng.nextInt(below: 10))
            let options = serving.randomOptions(&rng)
            let requests = try ServingRequest.all(in: trace)
            let largest = requests.map(\.kvTokens).max()!, total = requests.map(\.kvTokens).reduce(0, +)
            let room = largest + Int64(rng.nextInt(below: Int(total - largest) + 1))
            let scheduler = try ServingScheduler(trace: trace, options: options, kvRoomTokens: room)
            _ = try serving.drive(scheduler)
            let what = "seed \(seed) \(options.scheduler) room \(room)"
            #expect(scheduler.steps.allSatisfy { $0.kvHeld <= room && $0.kvHeld > 0 }, "\(what)")
            #expect(scheduler.log.finish.allSatisfy { $0 > 0 }, "\(what): a request never finished")
            let unlimited = try ServingScheduler(trace: trace, options: options, kvRoomTokens: total)
            _ = try serving.drive(unlimited)
            let free = try ServingScheduler(trace: trace, options: options)
            _ = try serving.drive(free)
            #expect(unlimited.log.start == free.log.start && unlimited.log.finish == free.log.finish, "\(what)")
        }
    }
}
