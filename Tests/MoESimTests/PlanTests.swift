import Foundation
import Testing
@testable import MoESim
import Yams

/// `moesim plan` (docs/plan.md): answers checked by independent replays, the frontier, determinism over jobs, the
/// edges of the search, bad input, and the settings engines take.
@Suite struct PlanTests {
    static let model = tinyModel(layers: 3, experts: 8, topK: 2)

    static func planner(_ target: PlanTarget, margin: Double = 0, seed: UInt64 = 1, gpuBytes: Double? = nil) throws -> Planner {
        let trace = zipfTrace(seed: seed, layers: 3, experts: 8, topK: 2, tokens: 60, sequences: 3)
        let spec = ReplaySpec(model: model, hardware: tinyHardware(), policy: .lru, budget: .experts(4))
        return try Planner(trace: trace, plan: StepPlan(trace), base: spec, target: target, margin: margin, memoryLimitBytes: gpuBytes)
    }

    /// tokens/s of `policy` at `experts` by a replay of its own (not the planner's).
    static func tokensPerSecond(_ p: Planner, _ policy: PolicyKind, _ experts: Int) throws -> Double {
        var spec = p.base
        spec.policy = policy
        spec.budget = .experts(experts)
        let r = try Replayer.replay(trace: p.trace, plan: p.plan, spec: spec)
        return Double(r.tokens) / (Double(r.counters.simNanoseconds) * 1e-9)
    }

    /// Over seeds and targets between the smallest budget's speed and the largest's: each strategy's answer meets
    /// the target in a replay of its own, and one expert fewer does not; the frontier is sorted by budget and each
    /// point is that budget's replay.
    @Test func answersAreCheckedByReplay() throws {
        var checked = 0
        let seeds = propertySeeds(3)
        defer { #expect(checked >= 2 * seeds.count, "strategies whose speed grows with the budget") }
        for seed in seeds {
            for policy in [PolicyKind.lru, .pregated, .cpuFallback] {
                let probe = try Self.planner(PlanTarget(.tokensPerSecond, 1), seed: seed)
                let low = try Self.tokensPerSecond(probe, policy, 1), high = try Self.tokensPerSecond(probe, policy, 24)
                guard high > low * 1.02 else { continue }
                let target = low + (high - low) * 0.6
                let p = try Self.planner(PlanTarget(.tokensPerSecond, target), seed: seed)
                let plan = try p.search(policy)
                checked += 1
                let a = try #require(plan.cheapest, "\(policy), seed \(seed)")
                #expect(try Self.tokensPerSecond(p, policy, a.budgetExperts) >= target, "\(policy), seed \(seed)")
                let below = try #require(plan.below)
                #expect(below.budgetExperts == a.budgetExperts - 1)
                #expect(try Self.tokensPerSecond(p, policy, below.budgetExperts) < target, "\(policy), seed \(seed)")
                let budgets = plan.points.map(\.budgetExperts)
                #expect(budgets == budgets.sorted() && Set(budgets).count == budgets.count)
                for point in plan.points {
                    #expect(point.figure == (try Self.tokensPerSecond(p, policy, point.budgetExperts)))
                }
            }
        }
    }

    /// The same inputs give the same plan on any number of jobs.
    @Test func theSamePlanOnAnyJobs() throws {
        let p = try Self.planner(PlanTarget(.tokensPerSecond, 1500))
        let policies: [PolicyKind] = [.lru, .lfu, .pregated, .cpuFallback, .nCpuMoe]
        let one = try p.run(policies: policies, jobs: 1), three = try p.run(policies: policies, jobs: 3)
        let shape = { (plans: [StrategyPlan]) in plans.map { ($0.policy, $0.points.map(\.budgetExperts), $0.points.map(\.figure)) } }
        #expect(shape(one).map(\.0) == policies)
        #expect(shape(one).map(\.1) == shape(three).map(\.1) && shape(one).map(\.2) == shape(three).map(\.2))
    }

    /// A target no budget reaches: no answer, the best figure reached is the largest budget's; a target the
    /// smallest budget meets: the smallest is the answer, with no step below.
    @Test func theEdgesOfTheSearch() throws {
        let unreachable = try Self.planner(PlanTarget(.tokensPerSecond, 1e9)).search(.lru)
        #expect(unreachable.cheapest == nil && unreachable.below == nil)
        #expect(unreachable.best(PlanTarget(.tokensPerSecond, 1e9))?.budgetExperts == 24)
        let easy = try Self.planner(PlanTarget(.tokensPerSecond, 1)).search(.lru)
        #expect(easy.cheapest?.budgetExperts == 1 && easy.below == nil)
        // A latency target: less is better.
        let slow = try Self.planner(PlanTarget(.tpotP99, 1)).search(.lru)
        #expect(slow.cheapest?.budgetExperts == 1)
        // The margin asks for more: 30% over a target the largest budget only just reaches is out of reach.
        let probe = try Self.planner(PlanTarget(.tokensPerSecond, 1))
        let top = try Self.tokensPerSecond(probe, .lru, 24)
        #expect(try Self.planner(PlanTarget(.tokensPerSecond, top)).search(.lru).cheapest != nil)
        #expect(try Self.planner(PlanTarget(.tokensPerSecond, top), margin: 0.3).search(.lru).cheapest == nil)
    }

    /// The memory split: GPU memory less the resident weights and the longest sequence's KV cache, in whole experts;
    /// a limit lowers the search's ceiling.
    @Test func theMemorySplitByHand() throws {
        // tinyModel: 50,000 non-expert params per layer at 2 B, 3 layers: 300 kB resident; an expert 200 kB; no KV.
        let split = MemorySplit(model: Self.model, gpuBytes: 1_300_000, contextTokens: 100, concurrency: 4)
        #expect(split.residentBytes == 300_000 && split.kvBytes == 0 && split.expertsThatFit == 5)
        var kv = Self.model
        kv.kvCacheDim = 1000
        kv.kvBytesPerValue = 1  // 1,000 B a token a layer: 3,000 B a token
        let withKV = MemorySplit(model: kv, gpuBytes: 1_300_000, contextTokens: 100, concurrency: 2)
        #expect(withKV.kvBytes == 600_000 && withKV.expertsThatFit == 2)
        let limited = try Self.planner(PlanTarget(.tokensPerSecond, 1e9), gpuBytes: 1_300_000).search(.lru)
        #expect(limited.points.map(\.budgetExperts).max() == 5)
    }

    @Test func badTargetsAreRefused() throws {
        for text in ["tokens_per_s", "speed=5", "tokens_per_s=-1", "tokens_per_s=abc", "tokens_per_s=0", "=5"] {
            #expect(throws: ConfigError.self, "\(text)") { try PlanTarget.parse(text) }
        }
        #expect(try PlanTarget.parse(" tpot_p99_s = 0.05 ") == PlanTarget(.tpotP99, 0.05))
        #expect(throws: ConfigError.self) { try Self.planner(PlanTarget(.goodput, 1)) }
        #expect(throws: ConfigError.self) { try Self.planner(PlanTarget(.tokensPerSecond, 1), margin: -0.1) }
        #expect(throws: ConfigError.self) { try Self.planner(PlanTarget(.tokensPerSecond, 1), gpuBytes: 400_000) }
    }

    /// llama.cpp's pattern for `--n-cpu-moe 3` over real GGUF tensor names (llama.cpp's LLM_TENSOR_FFN_*_EXPS,
    /// `blk.%d.ffn_up_exps` and so on): it matches the expert tensors of layers 0-2 and nothing else.
    @Test func llamaCppPatternMatchesTheGGUFExpertTensors() throws {
        let flags = try #require(EngineSettings.llamaCpp(cpuLayers: 3))
        #expect(flags.nCpuMoe == "--n-cpu-moe 3")
        #expect(EngineSettings.llamaCpp(cpuLayers: 0) == nil)
        let pattern = String(flags.overrideTensor.dropFirst(#"-ot ""#.count).dropLast(#"=CPU""#.count))
        let regex = try NSRegularExpression(pattern: pattern)
        func matches(_ name: String) -> Bool {
            regex.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
        }
        for layer in 0..<40 {
            for part in ["up", "down", "gate"] {
                #expect(matches("blk.\(layer).ffn_\(part)_exps.weight") == (layer < 3), "layer \(layer) \(part)")
                #expect(!matches("blk.\(layer).ffn_\(part)_shexp.weight"))
                #expect(!matches("blk.\(layer).ffn_\(part).weight"))
            }
            #expect(!matches("blk.\(layer).ffn_gate_inp.weight") && !matches("blk.\(layer).attn_q.weight"))
        }
    }

    /// The plan's run config reads back as the configuration the plan replayed: profiles with their overrides, the
    /// budget, the strategy and n-cpu-moe's layers.
    @Test func thePlansConfigReplaysTheAnswer() throws {
        var hardware = try HardwareProfile.preset("rtx3060")
        hardware.linkBytesPerSecond = 7.5e9
        let model = try ModelProfile.preset("mixtral-8x7b")
        let trace = try RoutingTrace.loadForReplay(packageRoot + "/traces/mixtral-decode-synth.jsonl.gz")
        var spec = ReplaySpec(model: model, hardware: hardware, policy: .nCpuMoe, budget: .experts(20))
        spec.runtime = .ideal
        let r = try Replayer.replay(trace: trace, plan: StepPlan(trace), spec: spec)
        let point = PlanPoint(policy: .nCpuMoe, budgetExperts: 20, budgetBytes: r.budgetBytes, figure: r.tokensPerSecond,
                              meets: true, spec: spec, hitRate: r.hitRate)
        let text = EngineSettings.moesimConfig(point, tracePath: packageRoot + "/traces/mixtral-decode-synth.jsonl.gz")
        #expect(text.contains("hardware: {preset: rtx3060, link_bytes_per_s: 7500000000.0}"))
        let cfg = try RunConfig.parse(text, path: "/tmp/plan.yaml")
        #expect(cfg.model == model && cfg.hardware == hardware && cfg.policies == [.nCpuMoe] && cfg.budget == .experts(20))
        #expect(cfg.placement.cpuLayers(model: model, budgetBytes: r.budgetBytes) == spec.placement.cpuLayers(model: model, budgetBytes: r.budgetBytes))
        var again = spec
        again.placement = cfg.placement
        #expect(try Replayer.replay(trace: trace, plan: StepPlan(trace), spec: again).counters == r.counters)
    }
}

/// `moesim plan` as a user runs it on the bundled trace.
@Suite struct PlanCLITests {
    @Test func aUserPlansAndReplaysThePlan() throws {
        let cli = CLITests()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try cli.moesim("plan", "--target", "tokens_per_s=5", "--policies", "lru,n-cpu-moe", "--jobs", "1", "--out", dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("plan: ") && r.stdout.contains("the next step down") && r.stdout.contains("--n-cpu-moe "))
        let frontier = try String(contentsOfFile: dir + "/frontier.csv", encoding: .utf8)
        #expect(frontier.hasPrefix("policy,budget_experts,budget_bytes,metric,value,meets,chosen,hit_rate\n"))
        let svg = try String(contentsOfFile: dir + "/frontier.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("lru") && svg.contains("n-cpu-moe"))
        let chosen = frontier.split(separator: "\n").dropFirst().filter { $0.split(separator: ",", omittingEmptySubsequences: false)[6] == "1" }
        #expect(chosen.count == 1 && chosen[0].split(separator: ",")[5] == "1", "one chosen row, and it meets the target")
        // The same plan, byte for byte, on two jobs; and resumed from its journal without a replay.
        let two = dir + "/two", resumed = dir + "/resumed"
        #expect(try cli.moesim("plan", "--target", "tokens_per_s=5", "--policies", "lru,n-cpu-moe", "--jobs", "2", "--out", two).status == 0)
        #expect(try String(contentsOfFile: two + "/frontier.csv", encoding: .utf8) == frontier)
        try FileManager.default.copyItem(atPath: dir + "/plan.journal", toPath: resumed + ".journal")
        try FileManager.default.createDirectory(atPath: resumed, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: resumed + ".journal", toPath: resumed + "/plan.journal")
        let again = try cli.moesim("plan", "--target", "tokens_per_s=5", "--policies", "lru,n-cpu-moe", "--resume", "--out", resumed)
        #expect(again.status == 0 && again.stdout.contains("resumed: \(frontier.split(separator: "\n").count - 1) replays"))
        #expect(try String(contentsOfFile: resumed + "/frontier.csv", encoding: .utf8) == frontier)
        // The plan's config, replayed by compare, meets the target.
        let check = dir + "/check.csv"
        let c = try cli.moesim("compare", "--config", dir + "/plan.yaml", "--out", check)
        #expect(c.status == 0, "\(c.stderr)")
        let rows = try String(contentsOfFile: check, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let column = try #require(rows[0].firstIndex(of: "tokens_per_s"))
        #expect(try #require(Double(rows[1][column])) >= 5)
    }

    /// `--vary` plans every combination; the frontier names the varied setting, and the answer's config carries it.
    @Test func aVariedSettingIsSearchedAndCarried() throws {
        let cli = CLITests()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try cli.moesim("plan", "--target", "tokens_per_s=40", "--scheduler", "continuous", "--vary", "serving.max_seqs=1,4",
                               "--policies", "cpu-fallback", "--jobs", "1", "--out", dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("serving.max_seqs=1:") && r.stdout.contains("chosen: serving.max_seqs=4"))
        let frontier = try String(contentsOfFile: dir + "/frontier.csv", encoding: .utf8).split(separator: "\n")
        #expect(frontier[0] == "serving.max_seqs,policy,budget_experts,budget_bytes,metric,value,meets,chosen,hit_rate")
        #expect(Set(frontier.dropFirst().map { $0.split(separator: ",")[0] }) == ["1", "4"])
        #expect(try String(contentsOfFile: dir + "/plan.yaml", encoding: .utf8).contains("max_seqs: 4"))
        // The grid is pruned (after the cheaper max_seqs=4 answer, max_seqs=1 is searched only below it): the same
        // answer whatever the order.
        let other = dir + "/other"
        let reordered = try cli.moesim("plan", "--target", "tokens_per_s=40", "--scheduler", "continuous", "--vary", "serving.max_seqs=4,1",
                                       "--policies", "cpu-fallback", "--jobs", "1", "--out", other)
        #expect(reordered.stdout.contains("pruned"))
        let answer = { (text: String) in text.split(separator: "\n").first { $0.hasPrefix("plan: ") } }
        #expect(answer(reordered.stdout) != nil && answer(reordered.stdout) == answer(r.stdout))
        let bad = try cli.moesim("plan", "--target", "tokens_per_s=40", "--vary", "serving.max_sqs=1,4", "--out", dir)
        #expect(bad.status != 0 && bad.stderr.contains("serving.max_seqs"))
    }

    @Test func targetsOutOfReachAndBadOnesEndClearly() throws {
        let cli = CLITests()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plan-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let far = try cli.moesim("plan", "--target", "tokens_per_s=1e6", "--policies", "lru", "--out", dir)
        #expect(far.status == 3 && far.stderr.contains("no strategy reaches tokens_per_s=1000000.0") && far.stderr.contains("the best reached is"))
        let bad = try cli.moesim("plan", "--target", "speed=3", "--out", dir)
        #expect(bad.status != 0 && bad.status != 3 && bad.stderr.contains("METRIC=VALUE"))
        let noSLO = try cli.moesim("plan", "--target", "goodput_rps=1", "--out", dir)
        #expect(noSLO.status != 0 && noSLO.stderr.contains("SLOs"))
    }
}

/// A plan's word on its runtime comes from the validation's own run.
@Suite struct ValidationRecordTests {
    /// The record equals docs/generated/validation.csv's tokens/s rows per runtime (read here, not by the record).
    @Test func theRecordIsTheValidationsTable() throws {
        let text = try String(contentsOfFile: packageRoot + "/docs/generated/validation.csv", encoding: .utf8)
        let lines = text.split(whereSeparator: \.isNewline).map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let header = lines[0]
        let runtime = header.firstIndex(of: "runtime")!, metric = header.firstIndex(of: "metric")!, ratio = header.firstIndex(of: "ratio")!
        let eager = lines.dropFirst().filter { $0[runtime] == "pytorch-eager" && $0[metric] == "tokens/s" }.map { Double($0[ratio])! }
        let r = try #require(ValidationRecord.of(runtime: "pytorch-eager"))
        #expect(r.rows == eager.count && r.lowest == eager.min() && r.highest == eager.max())
        #expect(r.within30 == eager.filter { abs($0 - 1) <= 0.3 }.count)
        #expect(ValidationRecord.note(runtime: .ideal, presetNames: RuntimeProfile.presetNames).contains("not compared"))
        #expect(ValidationRecord.note(runtime: try RuntimeProfile.preset("pytorch-eager"), presetNames: RuntimeProfile.presetNames)
                    .contains(String(format: "%.2f–%.2f×", eager.min()!, eager.max()!)))
    }
}

/// SGLang's `--init-expert-location` file read by SGLang's own rules (sglang/srt/eplb/expert_location.py:
/// `physical_to_logical_map` of shape (layers, E + R), E + R divisible by the GPUs, physical slot p on GPU
/// p // ((E + R) / G)): every slot's GPU holds that expert in moesim's map, every replica has its slot.
@Suite struct SGLangLocationTests {
    @Test(arguments: [(ExpertMap.Kind.replicated, 4, 8), (.roundRobin, 4, 0), (.frequencyBalanced, 2, 0), (.replicated, 2, 2)])
    func theMapAsSGLangReadsIt(kind: ExpertMap.Kind, gpus: Int, redundant: Int) throws {
        let trace = zipfTrace(seed: 3, layers: 3, experts: 8, topK: 2, tokens: 60, sequences: 3)
        let map = try ExpertMap(kind, gpus: gpus, plan: StepPlan(trace), redundant: redundant)
        let text = try #require(EngineSettings.sglangExpertLocation(map, layers: 3, experts: 8).json)
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        let rows = try #require(object?["physical_to_logical_map"] as? [[Int]])
        let physical = 8 + redundant
        #expect(rows.count == 3 && rows.allSatisfy { $0.count == physical } && physical % gpus == 0)
        let local = physical / gpus
        for (l, row) in rows.enumerated() {
            for (p, logical) in row.enumerated() {
                #expect(map.replicas[l * 8 + logical].contains(Int32(p / local)), "layer \(l) slot \(p)")
            }
            for e in 0..<8 { #expect(row.filter { $0 == e }.count == map.replicas[l * 8 + e].count) }
        }
    }

    /// A map that leaves the GPUs unequal has no SGLang form: 8 experts round-robin on 3 GPUs (3, 3, 2).
    @Test func unequalGPUsAreRefusedWithTheReason() throws {
        let trace = zipfTrace(seed: 3, layers: 3, experts: 8, topK: 2, tokens: 60, sequences: 3)
        let map = try ExpertMap(.roundRobin, gpus: 3, plan: StepPlan(trace), redundant: 0)
        let r = EngineSettings.sglangExpertLocation(map, layers: 3, experts: 8)
        #expect(r.json == nil && r.reason?.contains("3, 3, 2") == true)
    }
}

/// KTransformers' optimize rules as KTransformers reads them (its injection tutorial and FAQ): a YAML list of rules,
/// each module taking the first rule whose `match.name` regex matches its name (`model.layers.L.mlp.experts`).
@Suite struct KTransformersRulesTests {
    @Test(arguments: [(10, 48), (0, 26), (26, 26), (1, 2)])
    func eachLayersExpertsGoWhereThePlanPutsThem(cpuLayers: Int, layers: Int) throws {
        let text = try #require(EngineSettings.ktransformersRules(cpuLayers: cpuLayers, layers: layers, model: "qwen3-30b-a3b"))
        let rules = try #require(try Yams.load(yaml: text) as? [[String: Any]])
        for l in 0..<(layers + 3) {
            let name = "model.layers.\(l).mlp.experts"
            let first = rules.first { rule in
                let pattern = (rule["match"] as? [String: Any])?["name"] as? String ?? ""
                return (try? NSRegularExpression(pattern: pattern))?.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
            }
            guard l < layers else { #expect(first == nil, "no rule for layer \(l)"); continue }
            let rule = try #require(first, "layer \(l)")
            let replace = try #require(rule["replace"] as? [String: Any])
            let kwargs = try #require(replace["kwargs"] as? [String: Any])
            #expect(replace["class"] as? String == "ktransformers.operators.experts.KTransformersExperts")
            #expect(rule["recursive"] as? Bool == false)
            if l < cpuLayers {
                #expect(kwargs["generate_device"] as? String == "cpu" && kwargs["generate_op"] as? String == "KExpertsCPU"
                        && kwargs["out_device"] as? String == "cuda:0", "layer \(l)")
            } else {
                #expect(kwargs["generate_device"] as? String == "cuda:0" && kwargs["generate_op"] as? String == "KExpertsMarlin", "layer \(l)")
            }
        }
        #expect(EngineSettings.ktransformersRules(cpuLayers: 4, layers: 32, model: "mixtral-8x7b") == nil)
    }
}

/// plan.yaml carries every setting the answer's strategy takes, and none it does not (a config naming one is
/// refused): mixed-precision with its own threshold and bits replays to the same counters.
@Suite struct PlanConfigSettingsTests {
    @Test func aStrategysOwnSettingsTravelWithIt() throws {
        let model = try ModelProfile.preset("mixtral-8x7b")
        let path = packageRoot + "/traces/mixtral-decode-synth.jsonl.gz"
        let trace = try RoutingTrace.loadForReplay(path)
        var spec = ReplaySpec(model: model, hardware: try HardwareProfile.preset("a100-80gb-pcie"), policy: .mixedPrecision,
                              budget: .experts(40))
        spec.precision.threshold = 0.15
        spec.precision.lowBits = 2
        spec.precision.skipThreshold = 0.05  // not mixed-precision's: left out
        spec.prefetch.accuracy = 0.8          // nor this
        let r = try Replayer.replay(trace: trace, plan: StepPlan(trace), spec: spec)
        let point = PlanPoint(policy: .mixedPrecision, budgetExperts: 40, budgetBytes: r.budgetBytes, figure: r.tokensPerSecond,
                              meets: true, spec: spec, hitRate: r.hitRate)
        let text = EngineSettings.moesimConfig(point, tracePath: path)
        #expect(text.contains("precision: {threshold: 0.15, low_bits: 2, group_size: 64, low_hit: accept}"))
        #expect(!text.contains("skip_threshold") && !text.contains("prefetch:") && !text.contains("placement:"))
        let cfg = try RunConfig.parse(text, path: "/tmp/plan.yaml")
        try SettingScope.check(cfg.givenSettings, policies: cfg.policies, schedulers: [cfg.serving.scheduler])
        var again = spec
        again.precision = cfg.precision
        #expect(cfg.precision.threshold == 0.15 && cfg.precision.lowBits == 2)
        #expect(try Replayer.replay(trace: trace, plan: StepPlan(trace), spec: again).counters == r.counters)
    }
}

/// `METRIC=best`: the fastest strategy within the GPU's memory, each replayed at the most experts that fit.
@Suite struct PlanBestTests {
    @Test func theBestWithinMemoryIsTheFastestAtTheCeiling() throws {
        let target = try PlanTarget.parse("tokens_per_s=best")
        #expect(target.best && target.description == "tokens_per_s=best" && !target.meets(1e9, margin: 0))
        for seed in propertySeeds(3) {
            let p = try PlanTests.planner(target, seed: seed, gpuBytes: 1_900_000)  // 300 kB resident, room for 8 experts
            let policies: [PolicyKind] = [.lru, .pregated, .cpuFallback]
            let plans = try p.run(policies: policies, jobs: 2)
            var figures: [PolicyKind: Double] = [:]
            for plan in plans {
                #expect(plan.cheapest?.budgetExperts == 8, "\(plan.policy), seed \(seed)")
                figures[plan.policy] = try PlanTests.tokensPerSecond(p, plan.policy, 8)
                #expect(plan.cheapest?.figure == figures[plan.policy])
            }
            let fastest = figures.max { $0.value < $1.value }!.key
            #expect(Planner.chosen(plans, target: target)?.policy == fastest, "seed \(seed)")
        }
    }
}

/// vLLM's flags by its own names (vllm/config/parallel.py): the placement strategy one of its `linear` and
/// `round_robin`, the EPLB config a JSON object with `num_redundant_experts`.
@Suite struct VLLMFlagsTests {
    @Test func theMapsVLLMCanTake() throws {
        let rr = try #require(EngineSettings.vllm(.roundRobin, gpus: 4, redundant: 0).flags)
        #expect(rr == "--data-parallel-size 4 --enable-expert-parallel --expert-placement-strategy round_robin")
        let eplb = try #require(EngineSettings.vllm(.replicated, gpus: 8, redundant: 16).flags)
        #expect(eplb.hasPrefix("--data-parallel-size 8 --enable-expert-parallel --enable-eplb --eplb-config '"))
        let json = String(eplb.split(separator: "'")[1])
        let config = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Int])
        #expect(config == ["num_redundant_experts": 16])
        for kind in [ExpertMap.Kind.frequencyBalanced, .affinity, .balancedComm] {
            let r = EngineSettings.vllm(kind, gpus: 4, redundant: 0)
            #expect(r.flags == nil && r.reason?.contains("\(kind)") == true)
        }
    }
}

/// SGLang's KTransformers flags for a static-frequency answer, by kt_ep_wrapper.py's names: a total of GPU experts
/// and the `frequency` placement (one of its strategies) with its frequency file.
@Suite struct KTransformersSGLangTests {
    @Test func aStaticFrequencyAnswersFlags() throws {
        let flags = try #require(EngineSettings.ktransformersSGLang(.staticFrequency, rest: .cpu, experts: 120))
        let words = flags.split(separator: " ").map(String.init)
        let value = { (flag: String) in words.firstIndex(of: flag).map { words[$0 + 1] } }
        #expect(value("--kt-num-gpu-experts") == "120")
        #expect(["frequency", "uniform", "front-loading", "random"].contains(value("--kt-expert-placement-strategy") ?? ""))
        #expect(value("--kt-expert-placement-strategy") == "frequency" && value("--kt-expert-frequency-file") != nil)
        #expect(EngineSettings.ktransformersSGLang(.lru, rest: .cpu, experts: 120) == nil)
        #expect(EngineSettings.ktransformersSGLang(.staticFrequency, rest: .demand, experts: 120) == nil)  // copies, not CPU
    }
}

/// `moesim plan --resume`: the replays of a plan killed or run before are reused, not made again.
@Suite struct PlanResumeTests {
    /// A journal holds every replay a plan made; a resumed planner over the same inputs replays nothing and plans the
    /// same; one line cut short by a kill is dropped; a journal of other inputs, or edited, is refused by line.
    @Test func aResumedPlanReusesItsReplays() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("journal-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/plan.journal"
        let target = PlanTarget(.tokensPerSecond, 1500)
        var first = try PlanTests.planner(target)
        first.journal = try PlanJournal(path: path, inputs: "abc", resume: false)
        let made = try first.search(.lru)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == made.points.count + 1 && lines[0] == "# moesim plan journal 1 inputs=abc")
        // Resumed: every point read back (a replay would be recorded again), the same plan.
        var again = try PlanTests.planner(target)
        let resumed = try PlanJournal(path: path, inputs: "abc", resume: true)
        #expect(resumed.kept.count == made.points.count)
        again.journal = resumed
        let same = try again.search(.lru)
        #expect(same.points.map(\.budgetExperts) == made.points.map(\.budgetExperts) && same.points.map(\.figure) == made.points.map(\.figure))
        #expect(same.cheapest?.budgetExperts == made.cheapest?.budgetExperts)
        #expect(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count == lines.count, "nothing replayed again")
        // A kill in the middle of a line: that line is dropped, the others kept.
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try String(text.dropLast(5)).write(toFile: path, atomically: false, encoding: .utf8)
        #expect(try PlanJournal(path: path, inputs: "abc", resume: true).kept.count == made.points.count - 1)
        // Other inputs, or an edited line: refused, naming the line.
        #expect(throws: ConfigError.self) { try PlanJournal(path: path, inputs: "xyz", resume: true) }
        try text.replacingOccurrences(of: ",lru,", with: ",lfu,").write(toFile: path, atomically: false, encoding: .utf8)
        do {
            _ = try PlanJournal(path: path, inputs: "abc", resume: true)
            Issue.record("an edited journal was accepted")
        } catch let ConfigError.file(_, line, _) {
            #expect(line == 2)
        }
    }
}

/// The answer over strategies: the fewest experts (read here from each strategy's own answer), ties by the figure.
@Suite struct PlanChoiceTests {
    @Test func theAnswerIsTheCheapestStrategy() throws {
        for seed in propertySeeds(3) {
            let target = PlanTarget(.tokensPerSecond, 1500)
            let plans = try PlanTests.planner(target, seed: seed).run(policies: [.lru, .lfu, .pregated, .cpuFallback, .nCpuMoe])
            let reached = plans.compactMap(\.cheapest)
            guard let fewest = reached.map(\.budgetExperts).min() else { continue }
            let chosen = try #require(Planner.chosen(plans, target: target)?.cheapest)
            #expect(chosen.budgetExperts == fewest, "seed \(seed)")
            let tied = reached.filter { $0.budgetExperts == fewest }.compactMap(\.figure)
            #expect(chosen.figure == tied.max(), "seed \(seed)")
        }
    }
}
