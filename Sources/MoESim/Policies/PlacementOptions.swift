/// Where the static placement strategies get their experts from, and what happens to a miss.
///
///     placement: {train_split: 0.5, cpu_layers: auto, rest: demand}
///
/// `static-frequency` pins the experts most used in the first `train_split` of the trace's sequences and is measured
/// on the rest; `n-cpu-moe` keeps the experts of the first `cpu_layers` layers on the host CPU (llama.cpp's
/// `--n-cpu-moe`; `auto`: the fewest layers that let every other layer's experts fit in the budget). A miss of an
/// expert not placed is copied on demand (`rest: demand`) or computed on the host CPU (`rest: cpu`).
public struct PlacementOptions: OptionSection {
    public static let section = "placement"
    public static let keys = ["train_split", "cpu_layers", "rest", "expert_map", "redundant_experts", "token_location"]

    /// What a miss of an expert that is not placed becomes.
    public enum Rest: String, CaseIterable, Sendable { case demand, cpu }

    /// Share of the sequences, in order, whose routing picks the placement; in (0, 1).
    public var trainSplit = 0.5
    /// Layers whose experts stay on the host CPU; nil: as few as the budget allows.
    public var cpuLayers: Int?
    public var rest = Rest.demand
    /// With several GPUs (`hardware.gpus`), which GPU holds each expert (`ExpertMap`, docs/multigpu.md).
    public var expertMap = ExpertMap.Kind.roundRobin
    /// `replicated`: extra replicas per layer, given to its hottest experts (DeepSeek's EPLB).
    public var redundantExperts = 0
    /// With several GPUs, where a token is between layers: on its sequence's GPU (each layer dispatches from and
    /// combines back to it), or, for a request's lone token in a step, on the GPU that computed most of its routes at the layer before
    /// (ExFlow's context-coherent expert parallelism: the KV cache on every GPU).
    public enum TokenLocation: String, CaseIterable, Sendable { case sequence, expert }
    public var tokenLocation = TokenLocation.sequence

    public init() {}

    public mutating func set(_ key: String, to text: String, origin: String) throws {
        switch key {
        case "train_split":
            trainSplit = try Self.number(key, text, in: Limits.trainSplit)
            try validate()
        case "cpu_layers": cpuLayers = text == "auto" ? nil : try Self.integer(key, text, in: Limits.cpuLayers)
        case "rest":
            guard let v = Rest(rawValue: text) else {
                throw ConfigError.invalidValue(field: "placement.rest", value: text, expected: "demand or cpu")
            }
            rest = v
        case "expert_map": expertMap = try ExpertMap.Kind(text)
        case "redundant_experts": redundantExperts = try Self.integer(key, text, in: Limits.redundantExperts)
        case "token_location":
            guard let v = TokenLocation(rawValue: text) else {
                throw ConfigError.invalidValue(field: "placement.token_location", value: text, expected: "sequence or expert")
            }
            tokenLocation = v
        default: throw Self.unknown(key, origin: origin)
        }
    }

    /// `n-cpu-moe`'s layers on the CPU: `cpu_layers`, or the fewest that let every other layer's experts fit in the
    /// budget (at most the model's layers).
    public func cpuLayers(model: ModelProfile, budgetBytes: Int) -> Int {
        min(model.layers, cpuLayers ?? LayerPlacement.fewestCPULayers(layers: model.layers, experts: model.experts,
                                                                       expertBytes: model.expertBytes, budgetBytes: budgetBytes))
    }

    public func validate() throws {
        // (0, 1): both parts must hold something; the closed range of `Limits` cannot say "open", so check here.
        if !(trainSplit > 0 && trainSplit < 1) {
            throw ConfigError.invalidValue(field: "placement.train_split", value: "\(trainSplit)",
                                           expected: "a share strictly between 0 and 1 (e.g. 0.5): both parts need sequences")
        }
        if let cpuLayers { try Limits.check(cpuLayers, in: Limits.cpuLayers, "placement.cpu_layers") }
    }
}
