/// The serving runtime between the model and the GPU: what it adds to the roofline of `HardwareProfile`
/// (SIMULATION.md, Execution model: runtime costs).
///
///     let eager = try RuntimeProfile.preset("pytorch-eager")
///     eager.layerOverheadSeconds   // Python and dispatch time of a layer's non-expert part
///
/// `ideal` (every overhead 0, every fraction 1, pinned buffers) is the pure roofline: the golden tests run on it.
/// Invariant: overheads are zero or more, fractions in (0, 1]; each only ever slows a run down.
public struct RuntimeProfile: Equatable, Sendable {
    public var name: String
    /// Host-side time of each layer's non-expert part (framework dispatch, the launches of its small kernels).
    public var layerOverheadSeconds: Double
    /// Host-side time of each expert a layer computes (routing bookkeeping, gather and scatter, its launches).
    public var expertOverheadSeconds: Double
    /// Shares of the datasheet's memory bandwidth and FLOP/s that the runtime's kernels achieve.
    public var hbmFraction: Double
    public var flopsFraction: Double
    /// Where host copies of the experts live: pinned copies run at the link's rate, pageable ones at
    /// `pageableLinkFraction` of it (the driver stages them through a pinned bounce buffer).
    public var hostBuffer: HostBuffer
    public var pageableLinkFraction: Double
    /// GPU memory traffic per weight that dequantisation adds when weights are stored below 16 bits (bytes per
    /// weight: an unfused dequantise-then-multiply writes and reads back an fp16 copy, 4; a fused kernel, 0).
    public var dequantBytesPerWeight: Double
    /// Each layer's cost of a prefetching strategy's predictor (pre-gate, cross-layer gate, affinity lookup).
    public var predictorSeconds: Double
    /// Which stream a miss's copy is issued on: its own (the layer's resident experts compute while it travels) or
    /// the compute stream (nothing of the layer computes before it lands). Prefetches always travel on their own.
    public var demandCopyStream: CopyStream
    public var source: String

    public enum HostBuffer: String, CaseIterable, Sendable { case pinned, pageable }
    public enum CopyStream: String, CaseIterable, Sendable { case copy, compute }

    public init(name: String, layerOverheadSeconds: Double = 0, expertOverheadSeconds: Double = 0, hbmFraction: Double = 1,
                flopsFraction: Double = 1, hostBuffer: HostBuffer = .pinned, pageableLinkFraction: Double = 1.0 / 3,
                dequantBytesPerWeight: Double = 0, predictorSeconds: Double = 0, demandCopyStream: CopyStream = .copy,
                source: String = "") {
        self.name = name; self.layerOverheadSeconds = layerOverheadSeconds
        self.expertOverheadSeconds = expertOverheadSeconds; self.hbmFraction = hbmFraction
        self.flopsFraction = flopsFraction; self.hostBuffer = hostBuffer
        self.pageableLinkFraction = pageableLinkFraction; self.dequantBytesPerWeight = dequantBytesPerWeight
        self.predictorSeconds = predictorSeconds; self.demandCopyStream = demandCopyStream; self.source = source
    }

    /// Share of the link's rate that expert copies get.
    public var linkFraction: Double { hostBuffer == .pinned ? 1 : pageableLinkFraction }

    /// Checks every field against `Limits`, as `set` does for a field given as text.
    public func validate() throws {
        for field in Self.fields { try field.check(self) }
    }
}

extension RuntimeProfile: OverridableProfile {
    public static let section = "runtime"
    public static let fields: [ProfileField<RuntimeProfile>] = [
        .double("layer_overhead_s", \.layerOverheadSeconds, Limits.overheadSeconds),
        .double("expert_overhead_s", \.expertOverheadSeconds, Limits.overheadSeconds),
        .double("hbm_fraction", \.hbmFraction, Limits.achievedFraction),
        .double("flops_fraction", \.flopsFraction, Limits.achievedFraction),
        .choice("host_buffer", \.hostBuffer),
        .double("pageable_link_fraction", \.pageableLinkFraction, Limits.achievedFraction),
        .double("dequant_bytes_per_weight", \.dequantBytesPerWeight, Limits.dequantBytesPerWeight),
        .double("predictor_s", \.predictorSeconds, Limits.overheadSeconds),
        .choice("demand_copy_stream", \.demandCopyStream),
        .string("source", \.source), .string("name", \.name),
    ]
}
