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
    /// Query heads and key-value heads of a layer's attention, and the width of one head (0: attention over the
    /// context is not modelled, the non-expert part costs its weights only).
    public var attentionHeads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Values the KV cache keeps per token and layer; 0 means 2 · kv_heads · head_dim (a key and a value per KV
    /// head). Multi-head latent attention (DeepSeek) caches one compressed vector instead: kv_lora_rank + rope dim.
    public var kvCacheDim: Int
    /// Bytes of one cached value (2: fp16/bf16 cache, also for models whose weights are fp8).
    public var kvBytesPerValue: Double
    public var source: String

    public init(name: String, layers: Int, experts: Int, topK: Int, hidden: Int, expertFFN: Int, matrices: Int,
                sharedExperts: Int = 0, sharedExpertFFN: Int = 0, nonExpertParamsPerLayer: Int,
                bytesPerParam: Double = 2, attention: Attention = .none, source: String = "") {
        self.name = name; self.layers = layers; self.experts = experts; self.topK = topK
        self.hidden = hidden; self.expertFFN = expertFFN; self.matrices = matrices
        self.sharedExperts = sharedExperts; self.sharedExpertFFN = sharedExpertFFN
        self.nonExpertParamsPerLayer = nonExpertParamsPerLayer; self.bytesPerParam = bytesPerParam
        attentionHeads = attention.heads; kvHeads = attention.kvHeads; headDim = attention.headDim
        kvCacheDim = attention.cacheDim; kvBytesPerValue = attention.bytesPerValue
        self.source = source
    }

    /// A layer's attention shape, as presets write it.
    public struct Attention: Sendable {
        public var heads: Int, kvHeads: Int, headDim: Int, cacheDim: Int, bytesPerValue: Double
        public init(heads: Int, kvHeads: Int, headDim: Int, cacheDim: Int = 0, bytesPerValue: Double = 2) {
            self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
            self.cacheDim = cacheDim; self.bytesPerValue = bytesPerValue
        }
        /// Attention over the context not modelled.
        public static let none = Attention(heads: 0, kvHeads: 0, headDim: 0)
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

    /// Values cached per token and layer: `kv_cache_dim`, or a key and a value per KV head.
    public var kvValuesPerTokenPerLayer: Int { kvCacheDim > 0 ? kvCacheDim : 2 * kvHeads * headDim }
    /// Bytes of the KV cache one token of context holds in one layer, and in every modelled layer.
    public var kvBytesPerTokenPerLayer: Double { Double(kvValuesPerTokenPerLayer) * kvBytesPerValue }
    public var kvBytesPerToken: Double { kvBytesPerTokenPerLayer * Double(layers) }

    /// Checks every field against `Limits` (as `set` does), then what they must satisfy together; sizes are
    /// derived in floating point first, so that no product of valid fields can overflow.
    public func validate() throws {
        for field in Self.fields { try field.check(self) }
        if topK > experts {
            throw ConfigError.invalidValue(field: "model.top_k", value: "\(topK)", expected: "at most experts (\(experts))")
        }
        if kvHeads > attentionHeads {
            throw ConfigError.invalidValue(field: "model.kv_heads", value: "\(kvHeads)",
                                           expected: "at most attention_heads (\(attentionHeads))")
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
        .double("bytes_per_param", \.bytesPerParam, Limits.bytesPerParam),
        .int("attention_heads", \.attentionHeads, Limits.attentionHeads), .int("kv_heads", \.kvHeads, Limits.attentionHeads),
        .int("head_dim", \.headDim, Limits.headDim), .int("kv_cache_dim", \.kvCacheDim, Limits.kvCacheDim),
        .double("kv_bytes_per_value", \.kvBytesPerValue, Limits.bytesPerParam), .string("source", \.source),
        .string("name", \.name),
    ]
}
