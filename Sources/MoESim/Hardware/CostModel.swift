/// Durations of GPU compute and host-to-GPU copies for one model on one GPU under one runtime (SIMULATION.md,
/// Execution model).
///
///     let cost = CostModel(model: mixtral, hardware: a100, runtime: .ideal)
///     cost.expertCompute(tokens: 1)   // max(2·n·params/FLOPs, bytes/HBM) + launch
///
/// The runtime scales the hardware's rates to what its kernels and buffers achieve and adds its fixed costs: per
/// layer (and per prediction), per expert, and the dequantisation traffic of low-bit weights. Under `ideal` every
/// duration is the pure roofline. All durations are integer nanoseconds; the one-token case, the hot one in decode,
/// is precomputed.
public struct CostModel: Sendable {
    public let expertParams: Double
    public let expertBytes: Int
    public let residentParamsPerLayer: Double
    public let residentBytesPerLayer: Double
    /// The hardware at the rates the runtime achieves: memory bandwidth, FLOP/s and link rate scaled by its fractions.
    public let hardware: HardwareProfile
    /// Fixed seconds the runtime adds to each expert's compute (dispatch and dequantisation), and to each layer's
    /// non-expert compute (dispatch, the predictor, dequantisation of the resident weights).
    public let expertOverheadSeconds: Double
    public let layerOverheadSeconds: Double
    /// Whether demand copies share the compute stream (runtime `demand_copy_stream: compute`): a layer then computes
    /// nothing, its resident experts included, before every copy it waits for has landed.
    public let copiesHoldCompute: Bool
    /// Expert compute for one token, and one copy of a full-precision expert.
    public var expertComputeOneToken: Int64 { expertComputeByTokens[1] }
    /// Expert compute for 0 … 64 tokens, by token count: a batch's union has a count per expert, mostly small.
    private let expertComputeByTokens: [Int64]
    public let expertCopy: Int64
    /// The link's fixed cost per copy (ns), which copies sharing the link do not share.
    public let linkLatency: Int64
    /// Three tiers: one expert's read from the SSD alone on its link (latency + bytes / read rate; no runtime
    /// fraction applies), and the drive's fixed cost per read (ns); 0 without an SSD.
    public let ssdRead: Int64
    public let ssdLatency: Int64
    /// Attention over the context: FLOPs per (query, key) pair, 4 · heads · head_dim (scores and the weighted sum of
    /// values), and KV-cache bytes per token of context read, per layer.
    public let attentionFlopsPerPair: Double
    public let kvBytesPerTokenPerLayer: Double
    /// Bytes of one token's hidden state (what CPU fallback moves each way).
    public let activationBytesPerToken: Double
    /// Host compute of an expert for one token, and one token's hidden state moved one way (CPU fallback's decode).
    private(set) var hostExpertOneToken: Int64 = 0
    private(set) var activationOneToken: Int64 = 0

    /// - Parameter chargesPredictor: whether the strategy runs a predictor each layer (`PolicyKind.runsPredictor`).
    public init(model: ModelProfile, hardware: HardwareProfile, runtime: RuntimeProfile = .ideal, chargesPredictor: Bool = false) {
        var achieved = hardware
        achieved.hbmBytesPerSecond *= runtime.hbmFraction
        achieved.gpuFlops *= runtime.flopsFraction
        achieved.linkBytesPerSecond *= runtime.linkFraction
        let hardware = achieved
        self.hardware = hardware
        expertParams = Double(model.expertParams)
        expertBytes = model.expertBytes
        residentParamsPerLayer = Double(model.nonExpertParamsPerLayer + model.sharedParamsPerLayer)
        residentBytesPerLayer = residentParamsPerLayer * model.bytesPerParam
        attentionFlopsPerPair = 4 * Double(model.attentionHeads) * Double(model.headDim)
        kvBytesPerTokenPerLayer = model.kvBytesPerTokenPerLayer
        // Weights stored below 16 bits are dequantised on each use: extra memory traffic per weight.
        let dequantSecondsPerWeight = model.bytesPerParam < 2 ? runtime.dequantBytesPerWeight / hardware.hbmBytesPerSecond : 0
        let expertOverhead = runtime.expertOverheadSeconds + expertParams * dequantSecondsPerWeight
        expertOverheadSeconds = expertOverhead
        layerOverheadSeconds = runtime.layerOverheadSeconds + (chargesPredictor ? runtime.predictorSeconds : 0)
            + residentParamsPerLayer * dequantSecondsPerWeight
        copiesHoldCompute = runtime.demandCopyStream == .compute
        expertComputeByTokens = (0...64).map {
            SimTime(seconds: CostModel.rooflineSeconds(params: Double(model.expertParams), bytes: Double(model.expertBytes),
                                                       tokens: Double($0), hardware: hardware) + expertOverhead).nanoseconds
        }
        expertCopy = CostModel.copy(bytes: model.expertBytes, hardware: hardware)
        linkLatency = SimTime(seconds: hardware.linkLatencySeconds).nanoseconds
        ssdRead = hardware.tiers.hasSSD ? SimTime(seconds: CostModel.ssdReadSeconds(bytes: Double(model.expertBytes), hardware.tiers)).nanoseconds : 0
        ssdLatency = SimTime(seconds: hardware.tiers.ssdLatencySeconds).nanoseconds
        activationBytesPerToken = Double(model.hidden) * model.bytesPerParam
        hostExpertOneToken = SimTime(seconds: hostExpertSeconds(tokens: 1)).nanoseconds
        activationOneToken = SimTime(seconds: activationSeconds(tokens: 1)).nanoseconds
    }

    /// Host CPU time of an expert for `tokens` tokens: max(2·n·params / host FLOP/s, bytes / host bandwidth), the
    /// roofline `calibrate` fits (the host reads the weights in the model's precision).
    public func hostExpertCompute(tokens: Int32) -> Int64 {
        tokens == 1 ? hostExpertOneToken : SimTime(seconds: hostExpertSeconds(tokens: Double(tokens))).nanoseconds
    }

    func hostExpertSeconds(tokens: Double) -> Double {
        max(2 * tokens * expertParams / hardware.hostFlops, Double(expertBytes) / hardware.hostBytesPerSecond)
    }

    /// One-way move of `tokens` hidden states between GPU and host: latency + bytes / link bandwidth. Small, so
    /// it does not queue behind expert copies (a separate, short DMA).
    public func activationTransfer(tokens: Int32) -> Int64 {
        tokens == 1 ? activationOneToken : SimTime(seconds: activationSeconds(tokens: Double(tokens))).nanoseconds
    }

    func activationSeconds(tokens: Double) -> Double {
        hardware.linkLatencySeconds + tokens * activationBytesPerToken / hardware.linkBytesPerSecond
    }

    /// GPU time of an expert that `tokens` tokens were routed to.
    public func expertCompute(tokens: Int32) -> Int64 {
        Int(tokens) < expertComputeByTokens.count ? expertComputeByTokens[Int(tokens)]
            : SimTime(seconds: expertSeconds(tokens: Double(tokens))).nanoseconds
    }

    func expertSeconds(tokens: Double) -> Double {
        CostModel.rooflineSeconds(params: expertParams, bytes: Double(expertBytes), tokens: tokens, hardware: hardware)
            + expertOverheadSeconds
    }

    /// GPU time of a layer's always-resident part (attention, router, shared experts) for `tokens` tokens: the
    /// roofline of its weights, plus attention over the context (`attentionSeconds`) in the same launch.
    public func nonExpertCompute(tokens: Int32, attention: StepAttention) -> Int64 {
        SimTime(seconds: nonExpertSeconds(tokens: Double(tokens), attention: attention)).nanoseconds
    }

    func nonExpertSeconds(tokens: Double, attention: StepAttention) -> Double {
        CostModel.rooflineSeconds(params: residentParamsPerLayer, bytes: residentBytesPerLayer, tokens: tokens,
                                  hardware: hardware) + attentionSeconds(attention) + layerOverheadSeconds
    }

    /// One layer's attention over the context: max(FLOPs / FLOP/s, KV-cache bytes read / HBM bandwidth), memory
    /// bound at decode, compute bound in a long prefill. 0 for a model without attention fields.
    public func attentionSeconds(_ attention: StepAttention) -> Double {
        max(Double(attention.pairs) * attentionFlopsPerPair / hardware.gpuFlops,
            Double(attention.kvRead) * kvBytesPerTokenPerLayer / hardware.hbmBytesPerSecond)
    }

    /// Time a copy of `bytes` takes alone on the link: latency + bytes / bandwidth (copies that overlap share the
    /// bandwidth: `Link`).
    public func copy(bytes: Int) -> Int64 { CostModel.copy(bytes: bytes, hardware: hardware) }

    static func copy(bytes: Int, hardware: HardwareProfile) -> Int64 {
        // May be 0: an infinitely fast link is a valid what-if. Saturates like `SimTime(seconds:)`.
        Int64(min((copySeconds(bytes: Double(bytes), hardware: hardware) * 1e9).rounded(), Double(Limits.simulatedNanoseconds)))
    }

    static func ssdReadSeconds(bytes: Double, _ tiers: MemoryTiers) -> Double {
        tiers.ssdLatencySeconds + bytes / tiers.ssdBytesPerSecond
    }

    static func copySeconds(bytes: Double, hardware: HardwareProfile) -> Double {
        hardware.linkLatencySeconds + bytes / hardware.linkBytesPerSecond
    }

    /// max(2·n·params / FLOP/s, bytes / HBM bandwidth) + launch cost: the roofline of one weight-streaming kernel.
    static func rooflineSeconds(params: Double, bytes: Double, tokens: Double, hardware: HardwareProfile) -> Double {
        max(2 * tokens * params / hardware.gpuFlops, bytes / hardware.hbmBytesPerSecond) + hardware.kernelLaunchSeconds
    }

    /// An upper bound on the simulated seconds of a run over `extent`: every duration the run could schedule, added
    /// up as if nothing overlapped (each resource serves one thing at a time, so the run cannot end later). Each
    /// access pays a copy, an upgrade copy, GPU and host compute and two activation moves at the largest token
    /// count; each step-layer its non-expert compute, attention as if each pair read a token of KV cache; a prefetching strategy at most `prefetchesPerStep` copies a step.
    func worstCaseSeconds(_ extent: PlanExtent, prefetchesPerStep: Int) -> Double {
        let copy = CostModel.copySeconds(bytes: Double(expertBytes), hardware: hardware)
        let tokens = Double(extent.maxAccessTokens)
        // With three tiers every copy and host computation may read its expert from the SSD first.
        let read = hardware.tiers.hasSSD ? CostModel.ssdReadSeconds(bytes: Double(expertBytes), hardware.tiers) : 0
        let perAccess = 2 * copy + 2 * read + expertSeconds(tokens: tokens)
            + hostExpertSeconds(tokens: tokens) + 2 * activationSeconds(tokens: tokens)
        let perLayer = CostModel.rooflineSeconds(params: residentParamsPerLayer, bytes: residentBytesPerLayer,
                                                 tokens: Double(extent.maxStepTokens), hardware: hardware) + layerOverheadSeconds
        // A step reads at most one token of KV cache per (query, key) pair, and the pairs do not depend on the order.
        let attention = Double(extent.attentionPairs) * Double(extent.layers)
            * max(attentionFlopsPerPair / hardware.gpuFlops, kvBytesPerTokenPerLayer / hardware.hbmBytesPerSecond)
        return Double(extent.accesses) * perAccess + Double(extent.steps) * Double(extent.layers) * perLayer + attention
            + Double(extent.steps) * Double(prefetchesPerStep) * (copy + read)
    }
}
