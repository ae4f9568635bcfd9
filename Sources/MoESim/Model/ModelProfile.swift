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

    public func validate() throws {
        func positive(_ v: Int, _ field: String) throws {
            if v <= 0 { throw ConfigError.invalidValue(field: "model.\(field)", value: "\(v)", expected: "a positive integer") }
        }
        try positive(layers, "layers"); try positive(experts, "experts"); try positive(topK, "top_k")
        try positive(hidden, "hidden"); try positive(expertFFN, "expert_ffn")
        if matrices != 2 && matrices != 3 {
            throw ConfigError.invalidValue(field: "model.matrices", value: "\(matrices)", expected: "2 (plain FFN) or 3 (SwiGLU)")
        }
        if topK > experts {
            throw ConfigError.invalidValue(field: "model.top_k", value: "\(topK)", expected: "at most experts (\(experts))")
        }
        if experts > Int(UInt16.max) {
            throw ConfigError.invalidValue(field: "model.experts", value: "\(experts)", expected: "at most 65535")
        }
        if sharedExperts < 0 || nonExpertParamsPerLayer < 0 {
            throw ConfigError.invalidValue(field: "model.shared_experts", value: "\(sharedExperts)", expected: "zero or more")
        }
        if !(bytesPerParam > 0) {
            throw ConfigError.invalidValue(field: "model.bytes_per_param", value: "\(bytesPerParam)", expected: "a positive number")
        }
    }
}

extension ModelProfile: OverridableProfile {
    public static let section = "model"
    public static let fields: [ProfileField<ModelProfile>] = [
        .int("layers", \.layers), .int("experts", \.experts), .int("top_k", \.topK),
        .int("hidden", \.hidden), .int("expert_ffn", \.expertFFN), .int("matrices", \.matrices),
        .int("shared_experts", \.sharedExperts), .int("shared_expert_ffn", \.sharedExpertFFN),
        .int("non_expert_params_per_layer", \.nonExpertParamsPerLayer),
        .double("bytes_per_param", \.bytesPerParam), .string("source", \.source), .string("name", \.name),
    ]
}
