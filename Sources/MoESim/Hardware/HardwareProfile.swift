/// A GPU, its host link and the host CPU, as the cost model sees them.
///
///     let hw = try HardwareProfile.preset("a100-80gb-pcie")
///     hw.linkBytesPerSecond   // 25e9: effective pinned host-to-device copies
///
/// Invariant: rates and sizes are positive, latencies and launch costs are zero or more.
public struct HardwareProfile: Equatable, Sendable {
    public var name: String
    /// GPU memory in bytes; expert budgets beyond it minus the resident weights are refused.
    public var gpuMemoryBytes: Double
    /// GPU memory (HBM/GDDR) bandwidth in bytes/s.
    public var hbmBytesPerSecond: Double
    /// Dense fp16 tensor FLOP/s.
    public var gpuFlops: Double
    /// Effective host-to-device copy bandwidth in bytes/s (all copy engines together).
    public var linkBytesPerSecond: Double
    /// Fixed cost of one copy: driver and DMA set-up.
    public var linkLatencySeconds: Double
    /// Copies the link carries at once; those under way share `linkBytesPerSecond` equally, and a lone copy gets all
    /// of it.
    public var copyEngines: Int
    /// Fixed cost added to each expert's and each layer's GPU computation.
    public var kernelLaunchSeconds: Double
    /// Host CPU FLOP/s and memory bandwidth (for CPU fallback; `calibrate` measures them).
    public var hostFlops: Double
    public var hostBytesPerSecond: Double
    /// Host memory and the SSD below the GPU (docs/tiers.md); the default is every expert in host memory.
    public var tiers = MemoryTiers()
    /// GPUs serving the model by expert parallelism (docs/multigpu.md), each like this one with its own expert
    /// budget and host link; 1: one GPU.
    public var gpus = 1
    /// The GPUs' interconnect for the all-to-all of tokens: bytes/s each GPU sends (and receives) at once, and a
    /// fixed cost per all-to-all. Uniform: every pair of GPUs at this rate.
    public var interconnectBytesPerSecond: Double = 0
    public var interconnectLatencySeconds: Double = 0
    /// Two levels: GPUs in nodes of `gpusPerNode` (0: one node), joined at `internodeBytesPerSecond` per GPU and
    /// direction (a node's NIC share); the interconnect above is within a node.
    public var gpusPerNode = 0
    public var internodeBytesPerSecond: Double = 0
    public var source: String

    public init(name: String, gpuMemoryBytes: Double, hbmBytesPerSecond: Double, gpuFlops: Double,
                linkBytesPerSecond: Double, linkLatencySeconds: Double = 10e-6, copyEngines: Int = 1,
                kernelLaunchSeconds: Double = 5e-6, hostFlops: Double = 1e12, hostBytesPerSecond: Double = 100e9,
                source: String = "") {
        self.name = name; self.gpuMemoryBytes = gpuMemoryBytes; self.hbmBytesPerSecond = hbmBytesPerSecond
        self.gpuFlops = gpuFlops; self.linkBytesPerSecond = linkBytesPerSecond
        self.linkLatencySeconds = linkLatencySeconds; self.copyEngines = copyEngines
        self.kernelLaunchSeconds = kernelLaunchSeconds; self.hostFlops = hostFlops
        self.hostBytesPerSecond = hostBytesPerSecond; self.source = source
    }

    /// Checks every field against `Limits`, as `set` does for a field given as text.
    public func validate() throws {
        for field in Self.fields { try field.check(self) }
    }
}

extension HardwareProfile: OverridableProfile {
    public static let section = "hardware"
    public static let fields: [ProfileField<HardwareProfile>] = [
        .double("gpu_memory_bytes", \.gpuMemoryBytes, Limits.gpuMemoryBytes),
        .double("hbm_bytes_per_s", \.hbmBytesPerSecond, Limits.hbmBytesPerSecond),
        .double("gpu_flops", \.gpuFlops, Limits.gpuFlops),
        .double("link_bytes_per_s", \.linkBytesPerSecond, Limits.linkBytesPerSecond),
        .double("link_latency_s", \.linkLatencySeconds, Limits.linkLatencySeconds),
        .int("copy_engines", \.copyEngines, Limits.copyEngines),
        .double("kernel_launch_s", \.kernelLaunchSeconds, Limits.kernelLaunchSeconds),
        .double("host_flops", \.hostFlops, Limits.hostFlops),
        .double("host_bytes_per_s", \.hostBytesPerSecond, Limits.hostBytesPerSecond),
        .double("host_expert_bytes", \.tiers.hostExpertBytes, Limits.tierBytes),
        .drive("ssd"),
        .double("ssd_bytes_per_s", \.tiers.ssdBytesPerSecond, Limits.ssdBytesPerSecond),
        .double("ssd_latency_s", \.tiers.ssdLatencySeconds, Limits.linkLatencySeconds),
        .int("ssd_queue_depth", \.tiers.ssdQueueDepth, Limits.ssdQueueDepth),
        .double("ssd_capacity_bytes", \.tiers.ssdCapacityBytes, Limits.tierBytes),
        .choice("memory_pool", \.tiers.pool),
        .choice("host_eviction", \.tiers.hostEviction),
        .int("gpus", \.gpus, Limits.gpus),
        .double("interconnect_bytes_per_s", \.interconnectBytesPerSecond, Limits.interconnectBytesPerSecond),
        .double("interconnect_latency_s", \.interconnectLatencySeconds, Limits.linkLatencySeconds),
        .int("gpus_per_node", \.gpusPerNode, Limits.gpusPerNode),
        .double("internode_bytes_per_s", \.internodeBytesPerSecond, Limits.interconnectBytesPerSecond),
        .string("source", \.source), .string("name", \.name),
    ]
}

extension ProfileField where Profile == HardwareProfile {
    /// An SSD preset by name (`SSDDrive.presets`, or `none`), which sets the `ssd_*` fields.
    static func drive(_ key: String) -> ProfileField {
        ProfileField(key: key, range: (SSDDrive.presets.map(\.name) + ["none"]).joined(separator: ", "),
                     current: { ($0.tiers.drive.isEmpty ? "none" : $0.tiers.drive, true) }) { profile, text in
            try profile.tiers.useDrive(text)
        }
    }
}
