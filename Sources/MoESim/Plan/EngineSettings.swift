/// A plan's answer in the formats engines take (docs/plan.md, where each format's source is named).
public enum EngineSettings {
    /// moesim's own run config of `point` (`moesim compare --config FILE` replays it): the trace by its absolute
    /// path, each profile as its preset and the fields that differ from it, the budget in experts, the strategy, and
    /// every prefetch, precision, placement and serving setting the strategy and scheduler take (`n-cpu-moe`'s
    /// layers as the number it chose).
    public static func moesimConfig(_ point: PlanPoint, tracePath: String) -> String {
        let spec = point.spec
        var lines = [
            "# Written by moesim plan: the cheapest configuration found that meets the target (docs/plan.md).",
            "trace: \(quoted(tracePath))",
            "model: \(profile(spec.model, preset: ModelProfile.preset))",
            "hardware: \(profile(spec.hardware, preset: HardwareProfile.preset))",
            "runtime: \(profile(spec.runtime, preset: RuntimeProfile.preset))",
            "budget: \(point.budgetExperts)experts",
            "cache_scope: \(spec.scope.rawValue)",
            "policies: [\(spec.policy.rawValue)]",
        ]
        let sections: [(String, [(String, String)])] = [
            ("prefetch", [("lookahead", "\(spec.prefetch.lookahead)"), ("accuracy", "\(spec.prefetch.accuracy)"),
                          ("seed", "\(spec.prefetch.seed)"), ("buffer", "\(spec.prefetch.bufferShare)"),
                          ("eviction", spec.prefetch.eviction.rawValue), ("admission", spec.prefetch.admission.rawValue)]),
            ("precision", [("threshold", "\(spec.precision.threshold)"), ("low_bits", "\(spec.precision.lowBits)"),
                           ("group_size", "\(spec.precision.groupSize)"), ("low_hit", spec.precision.lowHit.rawValue),
                           ("skip_threshold", "\(spec.precision.skipThreshold)")]),
            ("placement", [("train_split", "\(spec.placement.trainSplit)"),
                           ("cpu_layers", "\(spec.placement.cpuLayers(model: spec.model, budgetBytes: point.budgetBytes))"),
                           ("rest", spec.placement.rest.rawValue)]
                + (spec.hardware.gpus > 1 ? [("expert_map", quoted(spec.placement.expertMap.description)),
                                             ("token_location", spec.placement.tokenLocation.rawValue),
                                             ("redundant_experts", "\(spec.placement.redundantExperts)")] : [])),
        ]
        // Only what the strategy takes: a config that names a setting its strategy ignores is refused (SettingScope).
        for (section, items) in sections {
            let taken = items.filter { SettingScope.takes("\(section).\($0.0)", spec.policy) }
            if !taken.isEmpty { lines.append("\(section): {\(taken.map { "\($0.0): \($0.1)" }.joined(separator: ", "))}") }
        }
        let s = spec.serving
        if s.scheduler != .sequential {
            var items = ["scheduler: \(s.scheduler.rawValue)", "arrivals: \(quoted(s.arrivals.label))"]
            switch s.scheduler {
            case .static: items.append("batch: \(s.batch)")
            case .continuous: items += ["max_seqs: \(s.maxSeqs)", "max_tokens: \(s.maxTokens)", "prefill_chunk: \(s.prefillChunk)"]
            case .sequential: break
            }
            if let slo = s.slo { items += ["slo_ttft_s: \(slo.ttftSeconds)", "slo_tpot_s: \(slo.tpotSeconds)"] }
            lines.append("serving: {\(items.joined(separator: ", "))}")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// llama.cpp's flags that keep the experts of the first `cpuLayers` layers in host memory (its `n-cpu-moe`):
    /// `--n-cpu-moe N`, and the same as one `--override-tensor` (`-ot`) pattern over the GGUF expert tensors
    /// `blk.L.ffn_{up,down,gate}_exps` of those layers, the pattern llama.cpp's `--n-cpu-moe` itself adds per layer
    /// (common/arg.cpp, PR #15077), for engines without the flag. Nil for none.
    public static func llamaCpp(cpuLayers: Int) -> (nCpuMoe: String, overrideTensor: String)? {
        guard cpuLayers > 0 else { return nil }
        let layers = (0..<cpuLayers).map(String.init).joined(separator: "|")
        return ("--n-cpu-moe \(cpuLayers)", #"-ot "blk\.(\#(layers))\.ffn_(up|down|gate)_exps=CPU""#)
    }

    /// KTransformers' optimize rules (its YAML injection rules; docs/plan.md names the source) that put the routed
    /// experts of the first `cpuLayers` of `layers` MoE layers on the CPU and the rest on the GPU, as an `n-cpu-moe`
    /// answer does: one rule per device over the modules `model.layers.L.mlp.experts`, the GPU layers first (the first
    /// rule a module matches wins). Nil for a model whose experts are not `mlp.experts` (Mixtral's
    /// `block_sparse_moe` uses KTransformers' older operator).
    public static func ktransformersRules(cpuLayers: Int, layers: Int, model: String) -> String? {
        guard !model.lowercased().hasPrefix("mixtral") else { return nil }
        func rule(_ range: Range<Int>, _ kwargs: [String]) -> [String] {
            guard !range.isEmpty else { return [] }
            let ids = range.map(String.init).joined(separator: "|")
            return ["- match:", #"    name: "^model\\.layers\\.(\#(ids))\\.mlp\\.experts$""#, "  replace:",
                    "    class: ktransformers.operators.experts.KTransformersExperts", "    kwargs:"]
                + kwargs.map { "      " + $0 } + ["  recursive: False"]
        }
        let cpu = max(0, min(cpuLayers, layers))
        let split = cpu == 0 ? "every layer's routed experts on the GPU" : cpu == layers ? "every layer's routed experts on the CPU"
            : "routed experts of layers \(cpu)-\(layers - 1) on the GPU, of layers 0-\(cpu - 1) on the CPU"
        let lines = ["# KTransformers optimize rules written by moesim plan: \(split).",
                     "# Put them before your model's own experts rule (the first rule a module matches wins)."]
            + rule(cpu..<layers, [#"generate_device: "cuda:0""#, #"generate_op: "KExpertsMarlin""#])
            + rule(0..<cpu, [#"generate_device: "cpu""#, #"generate_op: "KExpertsCPU""#, #"out_device: "cuda:0""#])
        return lines.joined(separator: "\n") + "\n"
    }

    /// SGLang's KTransformers integration (kt-kernel) for a `static-frequency` answer of `experts` GPU experts: the
    /// most used experts resident on the GPU, the rest computed on the CPU. `--kt-num-gpu-experts` is the total over
    /// the MoE layers and `frequency` picks the most activated ones from SGLang's expert distribution recording
    /// (sglang/srt/layers/moe/kt_ep_wrapper.py: `generate_*_masks`, "Total number of GPU experts to allocate";
    /// `--kt-expert-frequency-file`). Nil for other strategies, and for misses copied on demand (`placement.rest:
    /// demand`): KTransformers computes the other experts on the CPU (`rest: cpu`).
    public static func ktransformersSGLang(_ policy: PolicyKind, rest: PlacementOptions.Rest, experts: Int) -> String? {
        guard policy == .staticFrequency && rest == .cpu else { return nil }
        return "--kt-num-gpu-experts \(experts) --kt-expert-placement-strategy frequency --kt-expert-frequency-file EXPERT_DISTRIBUTION.pt"
    }

    /// vLLM's flags for a plan on `gpus` GPUs under expert parallelism with data-parallel attention (docs/plan.md;
    /// vllm/config/parallel.py: `ExpertPlacementStrategy` is `linear` or `round_robin`, `EPLBConfig` takes
    /// `num_redundant_experts`): `round-robin` is vLLM's `round_robin` placement, `replicated` its EPLB with the same
    /// redundant experts (vLLM then rebalances from its own load window rather than from the trace). Nil, with the
    /// reason, for a map vLLM cannot be given.
    public static func vllm(_ map: ExpertMap.Kind, gpus: Int, redundant: Int) -> (flags: String?, reason: String?) {
        let common = "--data-parallel-size \(gpus) --enable-expert-parallel"
        switch map {
        case .roundRobin: return ("\(common) --expert-placement-strategy round_robin", nil)
        case .replicated: return (#"\#(common) --enable-eplb --eplb-config '{"num_redundant_experts": \#(redundant)}'"#, nil)
        default:
            return (nil, "vLLM places experts linearly or round-robin, or rebalances them itself (EPLB); it takes no map of one's own such as \(map)")
        }
    }

    /// SGLang's `--init-expert-location` JSON for `map` (docs/plan.md; sglang/srt/eplb/expert_location.py):
    /// `{"physical_to_logical_map": [[…], …]}`, per layer the logical expert of each physical slot, GPU g's slots
    /// being g · S ..< (g + 1) · S with S = slots per GPU, each GPU's experts in ascending id. SGLang needs every GPU
    /// to hold the same number S (E + R = G · S): nil, with the reason, for a map that does not.
    public static func sglangExpertLocation(_ map: ExpertMap, layers: Int, experts: Int) -> (json: String?, reason: String?) {
        var rows: [[Int]] = []
        var slots: Int?
        for l in 0..<layers {
            var perGPU = [[Int]](repeating: [], count: map.gpus)
            for e in 0..<experts { for g in map.replicas[l * experts + e] { perGPU[Int(g)].append(e) } }
            let counts = Set(perGPU.map(\.count))
            guard counts.count == 1, let s = counts.first, slots == nil || slots == s else {
                return (nil, "SGLang gives every GPU the same number of physical experts; this map puts \(perGPU.map(\.count).map(String.init).joined(separator: ", ")) on the GPUs at layer \(l)")
            }
            slots = s
            rows.append(perGPU.flatMap { $0 })
        }
        let body = rows.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }.joined(separator: ",\n  ")
        return ("{\"physical_to_logical_map\": [\n  \(body)\n]}\n", nil)
    }

    /// A profile as a config writes it: its preset's name, or `{preset: NAME, field: value, …}` with the fields that
    /// differ from the preset (a profile named after no preset starts from the first preset and sets every field
    /// that differs, its name among them).
    static func profile<P: OverridableProfile & Named>(_ p: P, preset: (String) throws -> P) -> String {
        let base = P.presetNames.contains(p.name) ? p.name : P.presetNames[0]
        guard let reference = try? preset(base) else { return p.name }
        let changed = P.fields.compactMap { f -> String? in
            let mine = f.current(p).text
            return mine == f.current(reference).text ? nil : "\(f.key): \(quoted(mine))"
        }
        return changed.isEmpty ? base : "{preset: \(base), \(changed.joined(separator: ", "))}"
    }

    /// `text` as a YAML scalar that reads back as the same string.
    static func quoted(_ text: String) -> String {
        let plain = text.allSatisfy { $0.isLetter || $0.isNumber || "._-+/".contains($0) } && !text.isEmpty
        return plain ? text : "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}

/// A profile with a name (model, hardware and runtime profiles).
protocol Named { var name: String { get } }
extension ModelProfile: Named {}
extension HardwareProfile: Named {}
extension RuntimeProfile: Named {}
