import Foundation
import Testing
@testable import MoESim

/// Runtime profiles (issue 14, part 1): hand-worked costs, overheads that only ever slow a run down, bad input.
struct RuntimeTests {
    /// Pageable buffers at a quarter of the link, half the HBM bandwidth, 4 µs per expert, 3 µs per layer.
    static let slow = RuntimeProfile(name: "slow", layerOverheadSeconds: 3e-6, expertOverheadSeconds: 4e-6, hbmFraction: 0.5,
                                     hostBuffer: .pageable, pageableLinkFraction: 0.25)

    /// The tiny model's costs worked by hand (TestSupport: 100,000-parameter experts of 200 kB, 50,000 resident
    /// parameters per layer; HBM 1e11 B/s, 1e12 FLOP/s, link 1 GB/s + 1 µs, 1 µs launches).
    @Test func costsAreTheRooflineAtAchievedRatesPlusTheOverheads() {
        let ideal = CostModel(model: tinyModel(), hardware: tinyHardware())
        #expect(ideal.expertCompute(tokens: 1) == 3_000)  // max(0.2 µs, 2 µs) + 1 µs
        #expect(ideal.copy(bytes: 200_000) == 201_000)
        let slow = CostModel(model: tinyModel(), hardware: tinyHardware(), runtime: Self.slow)
        #expect(slow.expertCompute(tokens: 1) == 9_000)  // max(0.2 µs, 200 kB / 50 GB/s = 4 µs) + 1 µs + 4 µs
        #expect(slow.copy(bytes: 200_000) == 801_000)  // 1 µs + 200 kB / 0.25 GB/s
        #expect(slow.nonExpertCompute(tokens: 1, attention: StepAttention(pairs: 0, kvRead: 0, kvHeld: 0)) == 6_000)  // 2 µs + 1 µs + 3 µs
        // The predictor is charged to strategies that run one.
        var predicting = Self.slow
        predicting.predictorSeconds = 5e-6
        #expect(CostModel(model: tinyModel(), hardware: tinyHardware(), runtime: predicting, chargesPredictor: true)
            .nonExpertCompute(tokens: 1, attention: StepAttention(pairs: 0, kvRead: 0, kvHeld: 0)) == 11_000)
        #expect(CostModel(model: tinyModel(), hardware: tinyHardware(), runtime: predicting, chargesPredictor: false)
            .nonExpertCompute(tokens: 1, attention: StepAttention(pairs: 0, kvRead: 0, kvHeld: 0)) == 6_000)
        // 4-bit weights (50 kB experts) dequantised at 4 bytes per weight: 4 × 100,000 / 1e11 = 4 µs per expert,
        // 2 µs per layer for the 50,000 resident weights; fp16 weights are not dequantised.
        var int4 = tinyModel()
        int4.bytesPerParam = 0.5
        let dequant = RuntimeProfile(name: "dequant", dequantBytesPerWeight: 4)
        let q = CostModel(model: int4, hardware: tinyHardware(), runtime: dequant)
        #expect(q.expertCompute(tokens: 1) == 5_500)  // max(0.2 µs, 0.5 µs) + 1 µs + 4 µs
        #expect(q.nonExpertCompute(tokens: 1, attention: StepAttention(pairs: 0, kvRead: 0, kvHeld: 0)) == 3_250)  // max(0.1, 25 kB / 1e11 = 0.25) + 1 + 2 µs
        #expect(CostModel(model: tinyModel(), hardware: tinyHardware(), runtime: dequant).expertCompute(tokens: 1) == 3_000)
    }

    /// One token, two layers, two experts each, on-demand: per layer the gate at 6 µs, two 801 µs copies one after
    /// the other, then two 9 µs computations: 1,626 µs a layer.
    @Test func aHandWorkedOnDemandTokenUnderASlowRuntime() throws {
        let trace = makeTrace([[[0, 1], [2, 3]]], experts: 4, topK: 2)
        var log = EventLog()
        let spec = ReplaySpec(model: tinyModel(), hardware: tinyHardware(), policy: .onDemand, budget: .experts(2),
                              runtime: Self.slow)
        let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec, sink: &log)
        #expect(r.counters.simNanoseconds == 3_252_000)
        let ends = log.drain().compactMap { e -> Int64? in if case .layerEnd = e.event { e.time.nanoseconds } else { nil } }
        #expect(ends == [1_626_000, 3_252_000])
        let ideal = try replay(trace, model: tinyModel(), policy: .onDemand, budget: .experts(2))
        #expect(ideal.counters.simNanoseconds == 820_000)  // per layer 2 + 402 + 6 µs
    }

    /// Two tokens through one layer under LRU with room for 3 (2 µs to the gate, 201 µs a copy, 3 µs a compute).
    /// Token 0 misses 0 and 1: with copies on their own stream 0 computes as it lands (203 µs), while 1 travels; on
    /// the compute stream nothing computes before both have landed (404 µs). Token 1 hits 1 and misses 2: the hit
    /// computes at the gate, or waits behind 2's copy and computes with it.
    @Test func aLayerWaitsForItsCopiesWhenTheyShareTheComputeStream() throws {
        let trace = makeTrace([[[0, 1]], [[1, 2]]], experts: 4, topK: 2)
        func run(_ stream: RuntimeProfile.CopyStream) throws -> (stall: Int64, log: [(SimEvent, Int64)]) {
            var log = EventLog(), runtime = RuntimeProfile.ideal
            runtime.demandCopyStream = stream
            let spec = ReplaySpec(model: tinyModel(layers: 1), hardware: tinyHardware(), policy: .lru, budget: .experts(3),
                                  runtime: runtime)
            let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec, sink: &log)
            return (r.counters.stallNanoseconds, log.drain().map { ($0.event, $0.time.nanoseconds) })
        }
        func expectLog(_ got: [(SimEvent, Int64)], _ want: [(SimEvent, Int64)]) {
            #expect(got.map(\.0) == want.map(\.0), "\(got)")
            #expect(got.map(\.1) == want.map(\.1), "\(got)")
        }
        let own = try run(.copy)
        expectLog(own.log, [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.miss(expert: 1), 2_000), (.copyStart(expert: 0), 2_000), (.copyEnd(expert: 0), 203_000),
            (.copyStart(expert: 1), 203_000), (.computeStart(expert: 0), 203_000), (.computeEnd(expert: 0), 206_000),
            (.copyEnd(expert: 1), 404_000), (.computeStart(expert: 1), 404_000), (.computeEnd(expert: 1), 407_000),
            (.layerEnd(step: 0, layer: 0), 407_000),
            (.layerStart(step: 1, layer: 0), 407_000), (.gate(step: 1, layer: 0), 409_000), (.hit(expert: 1), 409_000),
            (.miss(expert: 2), 409_000), (.computeStart(expert: 1), 409_000), (.copyStart(expert: 2), 409_000),
            (.computeEnd(expert: 1), 412_000), (.copyEnd(expert: 2), 610_000), (.computeStart(expert: 2), 610_000),
            (.computeEnd(expert: 2), 613_000), (.layerEnd(step: 1, layer: 0), 613_000),
        ])
        let shared = try run(.compute)
        expectLog(shared.log, [
            (.layerStart(step: 0, layer: 0), 0), (.gate(step: 0, layer: 0), 2_000), (.miss(expert: 0), 2_000),
            (.miss(expert: 1), 2_000), (.copyStart(expert: 0), 2_000), (.copyEnd(expert: 0), 203_000),
            (.copyStart(expert: 1), 203_000), (.copyEnd(expert: 1), 404_000), (.computeStart(expert: 0), 404_000),
            (.computeEnd(expert: 0), 407_000), (.computeStart(expert: 1), 407_000), (.computeEnd(expert: 1), 410_000),
            (.layerEnd(step: 0, layer: 0), 410_000),
            (.layerStart(step: 1, layer: 0), 410_000), (.gate(step: 1, layer: 0), 412_000), (.hit(expert: 1), 412_000),
            (.miss(expert: 2), 412_000), (.copyStart(expert: 2), 412_000), (.copyEnd(expert: 2), 613_000),
            (.computeStart(expert: 1), 613_000), (.computeEnd(expert: 1), 616_000), (.computeStart(expert: 2), 616_000),
            (.computeEnd(expert: 2), 619_000), (.layerEnd(step: 1, layer: 0), 619_000),
        ])
        // Stalls: 201 + 198 µs and 198 µs with their own stream; 402 µs and 201 µs on the compute stream.
        #expect(own.stall == 597_000 && shared.stall == 603_000)
    }

    static let seeds: [UInt64] = propertySeeds(12)

    /// Each field moved from its ideal value towards a slower runtime, alone.
    static let slower: [(String, String, String)] = [
        ("layer_overhead_s", "0", "2e-5"), ("expert_overhead_s", "0", "2e-5"), ("hbm_fraction", "1", "0.3"),
        ("flops_fraction", "1", "0.05"), ("dequant_bytes_per_weight", "0", "8"), ("predictor_s", "0", "2e-5"),
        ("host_buffer", "pinned", "pageable"), ("demand_copy_stream", "copy", "compute"),
    ]

    @Test(arguments: seeds)
    func everyOverheadOnlySlowsARunDown(seed: UInt64) throws {
        let trace = zipfTrace(seed: seed, layers: 4, experts: 8, topK: 2, tokens: 40)
        var model = tinyModel(layers: 4, experts: 8, topK: 2)
        model.bytesPerParam = 1  // int8 weights, so that dequantisation applies
        for policy in Self.monotonePolicies {
            for (field, lo, hi) in Self.slower {
                var fast = RuntimeProfile.ideal, slow = RuntimeProfile.ideal
                try fast.set(field, to: lo, origin: "test")
                try slow.set(field, to: hi, origin: "test")
                let a = try run(trace, model, policy, fast), b = try run(trace, model, policy, slow)
                #expect(b.simNanoseconds >= a.simNanoseconds, "\(policy) \(field) seed \(seed)")
                if Self.decidesWithoutTime.contains(policy) {
                    #expect(b.hits == a.hits && b.bytesH2D == a.bytesH2D, "\(policy) \(field) seed \(seed): timing only")
                }
            }
            // Pageable buffers, slower as their share of the link falls, never beat pinned ones.
            var previous = try run(trace, model, policy, .ideal).simNanoseconds
            for share in ["1", "0.5", "0.33", "0.1"] {
                var pageable = RuntimeProfile.ideal
                pageable.hostBuffer = .pageable
                try pageable.set("pageable_link_fraction", to: share, origin: "test")
                let t = try run(trace, model, policy, pageable).simNanoseconds
                #expect(t >= previous, "\(policy) pageable at \(share) seed \(seed)")
                previous = t
            }
        }
    }

    /// Every strategy but `prefetch-all`: its copies of a whole next layer keep their order, so a slower layer can
    /// let more of them land before they are needed and end sooner (seed 2 here: an expert overhead of 20 µs makes
    /// the run 5% shorter), a genuine effect of MoE-Prefetch's design, not of the runtime.
    static let monotonePolicies = PolicyKind.allCases.filter { $0 != .prefetchAll }

    /// The strategies whose decisions do not depend on time: a slower runtime changes only when things happen (the
    /// prefetchers and cpu-fallback can trade a wait for a different decision, so their hits and bytes may move).
    static let decidesWithoutTime: Set<PolicyKind> = [.onDemand, .lru, .fifo, .lfu, .arc, .belady, .allResident, .skip,
                                                      .mixedPrecision, .mixedSkip, .staticFrequency, .nCpuMoe]

    func run(_ trace: RoutingTrace, _ model: ModelProfile, _ policy: PolicyKind, _ runtime: RuntimeProfile) throws -> ReplayCounters {
        let spec = ReplaySpec(model: model, hardware: tinyHardware(), policy: policy, budget: .experts(10), runtime: runtime)
        return try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec).counters
    }

    @Test func badRuntimeInputIsRefusedNamingFileLineAndField() throws {
        let dir = temporaryDirectory()
        func fails(_ yaml: String, _ fragments: [String]) {
            let path = dir + "/rt.yaml"
            try! yaml.write(toFile: path, atomically: true, encoding: .utf8)
            do {
                _ = try RunConfig.profileFile(path, preset: RuntimeProfile.preset)
                Issue.record("accepted: \(yaml)")
            } catch {
                let text = "\(error)"
                for f in fragments { #expect(text.contains(f), "\(text) lacks \(f)") }
            }
        }
        fails("preset: ideal\nlayer_overhead_s: -1e-6\n", ["rt.yaml:2", "runtime.layer_overhead_s", "-1e-6"])
        fails("preset: ideal\nhbm_fraction: fast\n", ["rt.yaml:2", "runtime.hbm_fraction"])
        fails("preset: pytorch-eager\n\nflops_fraction: 1.5\n", ["rt.yaml:3", "runtime.flops_fraction"])
        fails("preset: ideal\nhost_buffer: mapped\n", ["rt.yaml:2", "pinned or pageable"])
        fails("preset: ideal\ndemand_copy_stream: default\n", ["rt.yaml:2", "runtime.demand_copy_stream", "copy or compute"])
        fails("preset: ideal\nlayer_overhead: 1e-6\n", ["rt.yaml:2", "runtime.layer_overhead", "layer_overhead_s"])
        fails("preset: pytorch-eagre\n", ["unknown runtime preset 'pytorch-eagre'", "pytorch-eager"])
        // A run config names the file and line too.
        let config = dir + "/run.yaml"
        try "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: a100-80gb-pcie\nruntime: {preset: ideal, hbm_fraction: 0}\nbudget: 25%\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        #expect { try RunConfig.load(config) } throws: { "\($0)".contains("run.yaml:4") && "\($0)".contains("runtime.hbm_fraction") }
    }

    /// Every preset is valid, and `ideal` changes nothing: the golden tests' runtime.
    @Test func presetsAreValidAndIdealIsTheRoofline() throws {
        for p in RuntimeProfile.presets { try p.validate() }
        #expect(Set(RuntimeProfile.presets.map(\.name)).isSuperset(of: ["ideal", "pytorch-eager", "cuda-graph", "llama.cpp"]))
        let ideal = try RuntimeProfile.preset("ideal")
        #expect(ideal.layerOverheadSeconds == 0 && ideal.expertOverheadSeconds == 0 && ideal.hbmFraction == 1
                && ideal.flopsFraction == 1 && ideal.hostBuffer == .pinned && ideal.dequantBytesPerWeight == 0
                && ideal.predictorSeconds == 0 && ideal.demandCopyStream == .copy)
    }

    /// `runtime` and `runtime.FIELD` are sweep axes: each cell carries its runtime, and a bad value is refused with
    /// the axis's name.
    @Test func runtimeIsASweepAxis() throws {
        let yaml = """
            traces: [t.jsonl]
            models: [mixtral-8x7b]
            hardware: [t4]
            policies: [lru]
            runtime: {preset: ideal, host_buffer: pageable}
            axes:
              budget: [25%]
              runtime: [ideal, pytorch-eager]
              runtime.layer_overhead_s: [0, 1e-3]
            """
        let cells = try SweepConfig.parse(yaml, path: "s.yaml").cells()
        #expect(cells.map(\.spec.runtime.name) == ["ideal", "ideal", "pytorch-eager", "pytorch-eager"])
        #expect(cells.map(\.spec.runtime.layerOverheadSeconds) == [0, 1e-3, 0, 1e-3])
        // The top-level runtime is every cell's until an axis replaces it.
        let base = try SweepConfig.parse(yaml.replacingOccurrences(of: "  runtime: [ideal, pytorch-eager]\n", with: ""), path: "s.yaml")
        #expect(try base.cells().allSatisfy { $0.spec.runtime.hostBuffer == .pageable })
        let bad = yaml.replacingOccurrences(of: "[0, 1e-3]", with: "[0, -1]")
        #expect { try SweepConfig.parse(bad, path: "s.yaml") } throws: { "\($0)".contains("runtime.layer_overhead_s") }
        let unknown = yaml.replacingOccurrences(of: "[ideal, pytorch-eager]", with: "[ideal, pytorch]")
        #expect { try SweepConfig.parse(unknown, path: "s.yaml") } throws: { "\($0)".contains("unknown runtime preset 'pytorch'") }
    }
}
