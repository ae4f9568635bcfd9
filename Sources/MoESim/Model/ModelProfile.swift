/// The shape of a Mixture-of-Experts model, as far as offloading cares.
///
///     let m = try ModelProfile.preset("mixtral-8x7b")
///     m.expertBytes     // 352_321_536 (3 · 4096 · 14336 · 2 bytes)
///
/// Invariant: every count is positive and `topK <= experts`; `validate()` checks it after overrides.
public struct ModelProfile: Equatable, Sendable {
    public var name: String
    /// MoE layers; dense layers without experts (DeepSeek's first ones) are not modelled.
    public var layers: Int
    /// Routed experts per MoE layer.
    public var experts: Int
    public var topK: Int
    /// Hidden size d.
    public var hidden: Int
    /// Intermediate size f of one routed expert.
    public var expertFFN: Int
    /// Weight matrices per expert: 3 for SwiGLU (gate, up, down), 2 for a plain FFN.
    public var matrices: Int
    /// Always-resident shared experts per layer, each of `sharedExpertFFN` intermediate size.
    public var sharedExperts: Int
    public var sharedExpertFFN: Int
    /// Attention, router and norm parameters per MoE layer; always resident, outside the expert budget.
    public var nonExpertParamsPerLayer: Int
    /// 2 for fp16/bf16, 1 for fp8.
    public var bytesPerParam: Double
    public var source: String

    public init(name: String, layers: Int, experts: Int, topK: Int, hidden: Int, expertFFN: Int, matrices: Int,
                sharedExperts: Int = 0, sharedExpertFFN: Int = 0, nonExpertParamsPerLayer: Int,
                bytesPerParam: Double = 2, source: String = "") {
        self.name = name; self.layers = layers; self.experts = experts; self.topK = topK
        self.hidden = hidden; self.expertFFN = expertFFN; self.matrices = matrices
        self.sharedExperts = sharedExperts; self.sharedExpertFFN = sharedExpertFFN
        self.nonExpertParamsPerLayer = nonExpertParamsPerLayer; self.bytesPerParam = bytesPerParam
        self.source = source
    }

    /// Parameters of one routed expert: matrices · d · f.
    public var expertParams: Int { matrices * hidden * expertFFN }
    /// Bytes of one routed expert at the model's precision.
    public var expertBytes: Int { Int((Double(expertParams) * bytesPerParam).rounded()) }
    /// Parameters of the shared experts of one layer.
    public var sharedParamsPerLayer: Int { sharedExperts * matrices * hidden * sharedExpertFFN }
    /// Bytes of all routed experts of the model.
    public var totalExpertBytes: Int { expertBytes * layers * experts }
    /// Bytes always resident on the GPU: non-expert weights and shared experts of every layer.
    public var residentWeightBytes: Int {
        Int((Double((nonExpertParamsPerLayer + sharedParamsPerLayer) * layers) * bytesPerParam).rounded())
    }

    /// Checks every field against `Limits` (as `set` does), then what they must satisfy together; sizes are
    /// derived in floating point first, so that no product of valid fields can overflow.
    public func validate() throws {
        for field in Self.fields { try field.check(self) }
        if topK > experts {
            throw ConfigError.invalidValue(field: "model.top_k", value: "\(topK)", expected: "at most experts (\(experts))")
        }
        if layers * experts > Limits.flatExperts {
            throw ConfigError.invalidValue(field: "model.layers × model.experts", value: "\(layers * experts)",
                                           expected: "at most \(Limits.flatExperts)")
        }
        if layers * topK > Limits.idsPerToken {
            throw ConfigError.invalidValue(field: "model.layers × model.top_k", value: "\(layers * topK)",
                                           expected: "at most \(Limits.idsPerToken)")
        }
        let expert = Double(matrices) * Double(hidden) * Double(expertFFN) * bytesPerParam
        let shared = Double(sharedExperts) * Double(matrices) * Double(hidden) * Double(sharedExpertFFN)
        let sizes: [(String, Double, Int)] = [
            ("bytes of one expert", expert, Limits.expertBytes),
            ("bytes of all experts", expert * Double(layers * experts), Limits.modelBytes),
            ("bytes of the resident weights", (Double(nonExpertParamsPerLayer) + shared) * Double(layers) * bytesPerParam,
             Limits.modelBytes),
        ]
        for (what, bytes, limit) in sizes where bytes > Double(limit) {
            throw ConfigError.invalidValue(field: "model (\(what))", value: String(format: "%.3g", bytes),
                                           expected: "at most \(formatBytes(limit))")
        }
    }
}

extension ModelProfile: OverridableProfile {
    public static let section = "model"
    public static let fields: [ProfileField<ModelProfile>] = [
        .int("layers", \.layers, Limits.layers), .int("experts", \.experts, Limits.experts),
        .int("top_k", \.topK, Limits.topK), .int("hidden", \.hidden, Limits.hidden),
        .int("expert_ffn", \.expertFFN, Limits.expertFFN), .int("matrices", \.matrices, Limits.matrices),
        .int("shared_experts", \.sharedExperts, Limits.sharedExperts),
        .int("shared_expert_ffn", \.sharedExpertFFN, Limits.sharedExpertFFN),
        .int("non_expert_params_per_layer", \.nonExpertParamsPerLayer, Limits.nonExpertParamsPerLayer),
        .double("bytes_per_param", \.bytesPerParam, Limits.bytesPerParam), .string("source", \.source),
        .string("name", \.name),
    ]
}
