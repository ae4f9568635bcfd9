/// Built-in GPU presets: the public figures of docs/profiles.md (sources there).
extension HardwareProfile {
    private static let gib = 1_073_741_824.0

    public static let presets: [HardwareProfile] = [
        HardwareProfile(name: "a100-40gb-pcie", gpuMemoryBytes: 40 * gib, hbmBytesPerSecond: 1555e9, gpuFlops: 312e12,
                        linkBytesPerSecond: 25e9, source: "NVIDIA A100 datasheet; PCIe Gen4 x16, ~25 GB/s pinned"),
        HardwareProfile(name: "a100-80gb-pcie", gpuMemoryBytes: 80 * gib, hbmBytesPerSecond: 1935e9, gpuFlops: 312e12,
                        linkBytesPerSecond: 25e9, source: "NVIDIA A100 datasheet; PCIe Gen4 x16, ~25 GB/s pinned"),
        HardwareProfile(name: "rtx3090", gpuMemoryBytes: 24 * gib, hbmBytesPerSecond: 936e9, gpuFlops: 142e12,
                        linkBytesPerSecond: 25e9, source: "NVIDIA Ampere GA102 whitepaper; PCIe Gen4 x16"),
        HardwareProfile(name: "t4", gpuMemoryBytes: 16 * gib, hbmBytesPerSecond: 320e9, gpuFlops: 65e12,
                        linkBytesPerSecond: 12e9, source: "NVIDIA T4 datasheet; PCIe Gen3 x16, ~12 GB/s pinned"),
        HardwareProfile(name: "h100-pcie", gpuMemoryBytes: 80 * gib, hbmBytesPerSecond: 2000e9, gpuFlops: 756e12,
                        linkBytesPerSecond: 50e9, source: "NVIDIA H100 datasheet; PCIe Gen5 x16, ~50 GB/s (estimate)"),
    ]

    /// - Throws: `ConfigError.unknownPreset` naming the presets and the closest one.
    public static func preset(_ name: String) throws -> HardwareProfile {
        guard let p = presets.first(where: { $0.name == name }) else {
            throw ConfigError.unknownPreset(kind: "hardware", name: name, known: presets.map(\.name))
        }
        return p
    }
}
