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
    /// Copy engines serving host-to-device copies; they share `linkBytesPerSecond` equally.
    public var copyEngines: Int
    /// Fixed cost added to each expert's and each layer's GPU computation.
    public var kernelLaunchSeconds: Double
    /// Host CPU FLOP/s and memory bandwidth (for CPU fallback; `calibrate` measures them).
    public var hostFlops: Double
    public var hostBytesPerSecond: Double
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

    public func validate() throws {
        let rates: [(String, Double)] = [
            ("gpu_memory_bytes", gpuMemoryBytes), ("hbm_bytes_per_s", hbmBytesPerSecond), ("gpu_flops", gpuFlops),
            ("link_bytes_per_s", linkBytesPerSecond), ("host_flops", hostFlops), ("host_bytes_per_s", hostBytesPerSecond),
        ]
        for (field, v) in rates where !(v > 0 && v.isFinite) {
            throw ConfigError.invalidValue(field: "hardware.\(field)", value: "\(v)", expected: "a positive number")
        }
        for (field, v) in [("link_latency_s", linkLatencySeconds), ("kernel_launch_s", kernelLaunchSeconds)]
        where !(v >= 0 && v.isFinite) {
            throw ConfigError.invalidValue(field: "hardware.\(field)", value: "\(v)", expected: "zero or a positive number")
        }
        if copyEngines < 1 {
            throw ConfigError.invalidValue(field: "hardware.copy_engines", value: "\(copyEngines)", expected: "1 or more")
        }
    }
}

extension HardwareProfile: OverridableProfile {
    public static let section = "hardware"
    public static let fields: [ProfileField<HardwareProfile>] = [
        .double("gpu_memory_bytes", \.gpuMemoryBytes), .double("hbm_bytes_per_s", \.hbmBytesPerSecond),
        .double("gpu_flops", \.gpuFlops), .double("link_bytes_per_s", \.linkBytesPerSecond),
        .double("link_latency_s", \.linkLatencySeconds), .int("copy_engines", \.copyEngines),
        .double("kernel_launch_s", \.kernelLaunchSeconds), .double("host_flops", \.hostFlops),
        .double("host_bytes_per_s", \.hostBytesPerSecond), .string("source", \.source), .string("name", \.name),
    ]
}
