import Foundation
import Testing
@testable import MoESim

/// Several GPUs (docs/multigpu.md): a hand-worked two-GPU run, properties of the maps and the token split over
/// seeds, and bad input.
@Suite struct MultiGPUTests {
    /// tinyHardware twice over an interconnect of 1 GB/s per direction and 1 µs per all-to-all.
    static func gpus(_ n: Int, rate: Double = 1e9, latency: Double = 1e-6) -> HardwareProfile {
        var hw = tinyHardware()
        hw.gpus = n
        hw.interconnectBytesPerSecond = rate
        hw.interconnectLatencySeconds = latency
        return hw
    }

    static func spec(_ model: ModelProfile, _ hw: HardwareProfile, _ policy: PolicyKind = .lru, budget: Budget,
                     map: ExpertMap.Kind = .roundRobin, redundant: Int = 0) -> ReplaySpec {
        var spec = ReplaySpec(model: model, hardware: hw, policy: policy, budget: budget)
        spec.placement.expertMap = map
        spec.placement.redundantExperts = redundant
        return spec
    }

    /// One layer of 4 experts, top-2, round-robin on two GPUs (0 and 2 on GPU 0, 1 and 3 on GPU 1); budget two
    /// experts per GPU; one sequence (it lives on GPU 0). A token's hidden state is 100 × 2 B = 200 B: an
    /// all-to-all that carries one takes 1 µs + 200 ns.
    /// - Token 0 routes to 0 and 1: 1 crosses. Gate at 2 µs (non-expert) + 1.2 µs (dispatch) = 3.2 µs on both
    ///   GPUs; each copies its expert (201 µs) and computes it (3 µs): 207.2 µs; the combine ends the layer at
    ///   208.4 µs.
    /// - Token 1 routes to 0 and 2, both on GPU 0: nothing crosses. Gate at 210.4 µs; 0 is a hit (computed to
    ///   213.4), 2 is copied (to 411.4) and computed: 414.4 µs. GPU 1 has nothing to do.
    @Test func twoGPUsByHand() throws {
        let trace = makeTrace([[[0, 1]], [[0, 2]]], experts: 4, topK: 2)
        let model = tinyModel(layers: 1, experts: 4, topK: 2)
        let r = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: Self.spec(model, Self.gpus(2), budget: .experts(2)))
        #expect(r.counters.simNanoseconds == 414_400)
        #expect(r.counters.firstStepLatencies == [208_400] && r.counters.decodeStepLatencies == [206_000])
        #expect((r.counters.accesses, r.counters.hits, r.counters.misses) == (4, 1, 3))
        let m = try #require(r.multiGPU)
        #expect(m.allToAllBytes == 400 && m.crossShare == 0.25)
        #expect(m.imbalanceMean == 1.5 && m.imbalanceP99 == 2)
        #expect(m.hitRateMin == 0 && m.hitRateMax == 1.0 / 3)
        let row = Metric.row(r), header = Metric.header(r.columnGroups)
        #expect(row[header.firstIndex(of: "gpus")!] == "2" && row[header.firstIndex(of: "expert_map")!] == "round-robin")
    }

    /// Over seeds and maps: every routed token is computed exactly once, on a GPU that holds its expert; replicas
    /// lose no token; all-to-all bytes are the crossing routes' hidden states, there and back.
    @Test(arguments: [ExpertMap.Kind.roundRobin, .frequencyBalanced, .replicated, .affinity, .balancedComm])
    func everyRouteIsComputedOnceWhereItsExpertIs(kind: ExpertMap.Kind) throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        for seed in propertySeeds(6) {
            let plan = StepPlan(zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 60, sequences: 3))
            for g in [2, 3, 4] {
                let redundant = kind == .replicated ? Int(seed) % 5 : 0
                let map = try ExpertMap(kind, gpus: g, plan: plan, redundant: redundant)
                #expect(map.replicas.allSatisfy { !$0.isEmpty && $0.count <= g && Set($0).count == $0.count })
                #expect(map.replicas.reduce(0) { $0 + $1.count } == 24 + 3 * redundant)
                let split = TokenSplit(map: map)
                var served = [Int](repeating: 0, count: plan.accesses)
                let parts = StepPlan.parts(of: plan, split: split)
                for gpu in 0..<g {
                    let mine = parts[gpu]
                    #expect(mine.steps == plan.steps && mine.tokens == plan.tokens)
                    for (e, n) in zip(mine.accessExpert, mine.accessTokens) {
                        #expect(map.replicas[Int(e)].contains(Int32(gpu)) && n > 0)
                    }
                    // Tokens per (step, layer, expert) on this GPU, added to the whole plan's access.
                    for s in 0..<plan.steps {
                        for l in 0..<3 {
                            let whole = plan.accessRange(step: s, layer: l), part = mine.accessRange(step: s, layer: l)
                            for a in part {
                                let i = whole.first { plan.accessExpert[$0] == mine.accessExpert[a] }!
                                served[i] += Int(mine.accessTokens[a])
                            }
                        }
                    }
                }
                #expect(served == plan.accessTokens.map(Int.init), "\(kind), seed \(seed), \(g) GPUs")
                var hw = Self.gpus(g)
                hw.interconnectLatencySeconds = 0
                let traffic = AllToAll(plan: plan, map: map, split: split, spec: Self.spec(model, hw, budget: .experts(4), map: kind))
                #expect(traffic.routes == plan.accessTokens.reduce(0) { $0 + Int($1) })
                #expect(traffic.bytes == 2 * traffic.crossingRoutes * model.hidden * 2)  // dispatched and combined
            }
        }
    }

    /// With every expert resident and an interconnect that costs nothing, G GPUs are never slower than one: each
    /// layer takes its slowest GPU, which computes a part of what one GPU would.
    @Test func moreGPUsAreNeverSlowerWhenNothingMisses() throws {
        let model = tinyModel(layers: 3, experts: 8, topK: 2)
        for seed in propertySeeds(5) {
            let plan = StepPlan(zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 40))
            let one = try Replayer.run(plan: plan, traceName: "t", spec: Self.spec(model, tinyHardware(), .allResident, budget: .experts(24)))
            for g in [2, 4] {
                let many = try Replayer.run(plan: plan, traceName: "t", spec: Self.spec(model, Self.gpus(g, rate: 1e30, latency: 0), .allResident, budget: .experts(24)))
                #expect(many.counters.simNanoseconds <= one.counters.simNanoseconds, "seed \(seed), \(g) GPUs")
                #expect(many.counters.accesses >= one.counters.accesses)
            }
        }
    }

    /// EPLB's replication gives the extra replicas to the most loaded experts per replica.
    @Test func replicationFollowsEPLB() {
        #expect(ExpertMap.replicate([10, 4, 6, 1], redundant: 3, gpus: 4) == [3, 1, 2, 1])  // 10 → 5, 6 → 3, 5 → 3.3
        let packed = ExpertMap.pack(loads: [10, 4, 6, 1], copies: [1, 1, 1, 1], gpus: 2)
        #expect(packed == [[0], [1], [1], [0]])  // two slots each: 10 on GPU 0; 6, 4 on GPU 1, then full; 1 on GPU 0
    }

    @Test func badSettingsAreRefused() throws {
        let model = tinyModel(layers: 1, experts: 4, topK: 2)
        let plan = StepPlan(makeTrace([[[0, 1]]], experts: 4, topK: 2))
        func refused(_ spec: ReplaySpec, _ field: String) {
            #expect { try Replayer.run(plan: plan, traceName: "t", spec: spec) } throws: { error in
                guard case let ConfigError.invalidValue(f, _, _) = error else { return false }
                return f == field
            }
        }
        #expect(throws: (any Error).self) {
            try SettingScope.check([("placement.expert_map", "--expert-map")], policies: [.lru], schedulers: [.sequential], gpus: [1])
        }
        try SettingScope.check([("placement.expert_map", "--expert-map")], policies: [.lru], schedulers: [.sequential], gpus: [1, 2])
        refused(Self.spec(model, Self.gpus(2, rate: 0), budget: .experts(2)), "hardware.interconnect_bytes_per_s")
        refused(Self.spec(model, Self.gpus(2), budget: .experts(2), redundant: 2), "placement.redundant_experts")
        refused(Self.spec(model, Self.gpus(2), budget: .experts(2), map: .replicated, redundant: 5), "placement.redundant_experts")
        var hw = tinyHardware()
        #expect(throws: (any Error).self) { try hw.set("gpus", to: "0", origin: "--set") }
        let dir = temporaryDirectory()
        let cases: [(String, String)] = [
            (#"{"gpus": 2, "layers": [[[0], [1], [0], []]]}"#, "on no GPU"),
            (#"{"gpus": 2, "layers": [[[0], [1], [0], [2]]]}"#, "GPU numbers run from 0 to 1"),
            (#"{"gpus": 2, "layers": [[[0], [1], [0]]]}"#, "3 experts, but the model has 4"),
            (#"{"gpus": 4, "layers": [[[0], [1], [0], [1]]]}"#, "hardware.gpus is 2"),
            (#"{"gpus": 2, "layers": [[[0], [1], [0], [1]], [[0], [1], [0], [1]]]}"#, "2 layers, but the model has 1"),
            ("not json", "a JSON object"),
        ]
        for (i, (text, message)) in cases.enumerated() {
            let path = dir + "/map\(i).json"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            #expect { try Replayer.run(plan: plan, traceName: "t", spec: Self.spec(model, Self.gpus(2), budget: .experts(2), map: .file(path))) } throws: { error in
                "\(error)".contains(path) && "\(error)".contains(message)
            }
        }
        let good = dir + "/good.json"
        try #"{"gpus": 2, "layers": [[[1], [0], [0, 1], [1]]]}"#.write(toFile: good, atomically: true, encoding: .utf8)
        let r = try Replayer.run(plan: plan, traceName: "t", spec: Self.spec(model, Self.gpus(2), budget: .experts(2), map: .file(good)))
        #expect(r.multiGPU?.map == "good.json" && r.counters.accesses == 2)
    }

    /// A sweep over GPU counts and maps: one-GPU cells keep empty GPU columns, and the HTML report plots against
    /// `gpus` with a line per map.
    @Test func aSweepOverGPUsAndItsReport() throws {
        let model = "{preset: mixtral-8x7b, layers: 2, experts: 4, top_k: 2, name: tiny}"
        let yaml = """
            traces: [\(packageRoot)/traces/golden-tiny.jsonl]
            models: [\(model)]
            hardware: [{preset: a100-80gb-pcie, interconnect_bytes_per_s: 450e9}]
            policies: [lru]
            axes:
              budget: [2experts]
              hardware.gpus: [1, 2, 4]
              placement.expert_map: [round-robin, frequency-balanced]
            """
        let out = temporaryDirectory() + "/s.csv"
        try SweepRunner(config: try SweepConfig.parse(yaml, path: "s.yaml"), output: out).run()
        let table = try ReportTable.load(out)
        let gpus = table.header.firstIndex(of: "gpus")!, map = table.header.firstIndex(of: "expert_map")!
        #expect(table.rows.count == 6)
        for row in table.rows {
            #expect(row[gpus] == row[table.header.firstIndex(of: "hardware.gpus")!])
            #expect(row[gpus] == "1" ? row[map].isEmpty : row[map] == row[table.header.firstIndex(of: "placement.expert_map")!])
        }
        #expect(HTMLReport.axis(for: table) == "gpus")
        let html = try HTMLReport.html(table, source: out, x: "gpus")
        #expect(html.contains("load_imbalance_mean by expert map") && html.contains("cross_gpu_share by expert map"))
    }

    /// Two layers of 4 experts, top-1, round-robin on two GPUs; one token of sequence 0 (GPU 0) routed to 1 (GPU 1)
    /// then to 3 (flat 7, GPU 1). A hop carries 200 B: 1.2 µs.
    /// - sequence: each layer dispatches from GPU 0 and combines back: gate 3.2 µs, layer 0 ends 207.2 + 1.2 =
    ///   208.4 µs; layer 1's gate 208.4 + 2 + 1.2 = 211.6, its expert done at 211.6 + 201 + 3 = 415.6, + 1.2 = 416.8.
    /// - expert: after layer 0 the token stays on GPU 1 (no combine: 207.2 µs), layer 1 needs no dispatch (gate
    ///   209.2, done 413.2), and the last combine brings it home: 414.4 µs. Half the routes cross, not all.
    @Test func aTokenFollowsItsExpertsByHand() throws {
        let trace = makeTrace([[[1], [3]]], experts: 4, topK: 1)
        let model = tinyModel(layers: 2, experts: 4, topK: 1)
        var spec = Self.spec(model, Self.gpus(2), budget: .experts(2))
        let home = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec)
        spec.placement.tokenLocation = .expert
        let follow = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: spec)
        #expect(home.counters.simNanoseconds == 416_800 && follow.counters.simNanoseconds == 414_400)
        #expect(home.multiGPU?.crossShare == 1 && follow.multiGPU?.crossShare == 0.5)
        #expect(home.multiGPU?.allToAllBytes == 800 && follow.multiGPU?.allToAllBytes == 400)
    }

    /// On traces whose tokens mostly follow an inter-layer partner (affinity 0.9), with tokens that follow their
    /// experts, the affinity map crosses GPUs no more often than round-robin.
    @Test func affinityCrossesNoMoreThanRoundRobin() throws {
        let model = tinyModel(layers: 4, experts: 16, topK: 2)
        for seed in propertySeeds(6) {
            var spec = SyntheticTraceSpec(tokens: 400, seed: seed)
            spec.affinity = 0.9; spec.reuse = 0; spec.prefillTokens = 0; spec.sequences = 4
            let plan = StepPlan(try SyntheticTraceGenerator(model: model, spec: spec).makeTrace(name: "a"))
            for g in [2, 4] {
                var run = Self.spec(model, Self.gpus(g), budget: .experts(8))
                run.placement.tokenLocation = .expert
                let roundRobin = try Replayer.run(plan: plan, traceName: "a", spec: run)
                run.placement.expertMap = .affinity
                let affinity = try Replayer.run(plan: plan, traceName: "a", spec: run)
                let (a, r) = (affinity.multiGPU!.crossShare, roundRobin.multiGPU!.crossShare)
                #expect(a <= r, "seed \(seed), \(g) GPUs: affinity \(a), round-robin \(r)")
            }
        }
    }

    /// The objective by hand: two layers of 2 experts, two GPUs, one-token steps 0→1, 0→1, 1→0 (layer 0 → layer 1).
    /// Loads: layer 0 {0: 2, 1: 1}, layer 1 {0: 1, 1: 2}. Round-robin (e on GPU e): largest loads 2 + 2, and the
    /// transitions 0→1 (twice) and 1→0 cross: 4 + 3 = 7. The bound: max(⌈3/2⌉, 2) per layer = 4.
    @Test func theMapObjectiveByHand() throws {
        let plan = StepPlan(makeTrace([[[0], [1]], [[0], [1]], [[1], [0]]], experts: 2, topK: 1))
        let roundRobin = try ExpertMap(.roundRobin, gpus: 2, plan: plan, redundant: 0)
        let o = MapObjective(roundRobin, plan: plan)
        #expect(o.value == 7 && o.lowerBound == 4)
        // balanced-comm: layer 1's expert 1 (2 tokens, both from layer 0's expert 0 on GPU 0) costs 2 + 0 on GPU 0
        // against 2 + 2 on GPU 1; then expert 0 takes GPU 1, where its one transition comes from. Loads 2 + 2, no
        // transition crosses: 4, the bound.
        let balanced = try ExpertMap(.balancedComm, gpus: 2, plan: plan, redundant: 0)
        #expect(balanced.replicas == [[0], [1], [1], [0]])
        #expect(MapObjective(balanced, plan: plan).value == 4)
    }

    /// Over seeds: every map's objective is at least the bound, and balanced-comm's is at most round-robin's.
    @Test func theObjectiveIsBoundedAndBalancedCommLowersIt() throws {
        let model = tinyModel(layers: 4, experts: 16, topK: 2)
        for seed in propertySeeds(6) {
            var spec = SyntheticTraceSpec(tokens: 300, seed: seed)
            spec.affinity = 0.6; spec.prefillTokens = 0
            let plan = StepPlan(try SyntheticTraceGenerator(model: model, spec: spec).makeTrace(name: "a"))
            for g in [2, 4] {
                var objectives: [String: Int] = [:]
                for kind in [ExpertMap.Kind.roundRobin, .frequencyBalanced, .affinity, .balancedComm] {
                    let map = try ExpertMap(kind, gpus: g, plan: plan, redundant: 0)
                    let o = MapObjective(map, plan: plan)
                    #expect(o.value >= o.lowerBound, "\(kind), seed \(seed), \(g) GPUs")
                    // The same objective from balanced-comm's table of transitions, pair by pair.
                    let follows = Transitions(plan), E = plan.experts
                    var expected = 0
                    for l in 0..<plan.layers {
                        var gpuLoad = [Int](repeating: 0, count: g)
                        for a in 0..<plan.accessExpert.count where Int(plan.accessExpert[a]) / E == l {
                            gpuLoad[Int(map.replicas[Int(plan.accessExpert[a])][0])] += Int(plan.accessTokens[a])
                        }
                        expected += gpuLoad.max()!
                        guard l > 0 else { continue }
                        for f in 0..<E {
                            for e in 0..<E where map.replicas[(l - 1) * E + f][0] != map.replicas[l * E + e][0] {
                                expected += follows.count(layer: l, from: f, to: e)
                            }
                        }
                    }
                    #expect(o.value == expected, "\(kind), seed \(seed), \(g) GPUs")
                    objectives[kind.description] = o.value
                }
                #expect(objectives["balanced-comm"]! <= objectives["round-robin"]!, "seed \(seed), \(g) GPUs: \(objectives)")
            }
        }
    }

    /// Two levels: 4 GPUs in nodes of 2, 1 GB/s within a node and 0.1 GB/s between nodes. One layer of 4 experts,
    /// top-2, round-robin; a token of sequence 0 (GPU 0) routed to 1 (GPU 1, same node) and 2 (GPU 2, other node):
    /// each all-to-all is 1 µs + max(200 B / 1 GB/s, 200 B / 0.1 GB/s) = 3 µs. Gate 2 + 3 = 5 µs, experts done at
    /// 5 + 201 + 3 = 209 µs, combine: 212 µs. In one node both hops share the 1 GB/s: 1 µs + 400 ns each, 208.8 µs.
    @Test func twoLevelsByHand() throws {
        let trace = makeTrace([[[1, 2]]], experts: 4, topK: 2)
        let model = tinyModel(layers: 1, experts: 4, topK: 2)
        var hw = Self.gpus(4)
        let oneNode = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: Self.spec(model, hw, budget: .experts(2)))
        hw.gpusPerNode = 2
        hw.internodeBytesPerSecond = 1e8
        let twoNodes = try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: Self.spec(model, hw, budget: .experts(2)))
        #expect(oneNode.counters.simNanoseconds == 208_800 && twoNodes.counters.simNanoseconds == 212_000)
        hw.internodeBytesPerSecond = 0
        #expect { try Replayer.run(plan: StepPlan(trace), traceName: "t", spec: Self.spec(model, hw, budget: .experts(2))) } throws: { error in
            guard case let ConfigError.invalidValue(field, _, _) = error else { return false }
            return field == "hardware.internode_bytes_per_s"
        }
    }
}
