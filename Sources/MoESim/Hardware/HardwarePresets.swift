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
        HardwareProfile(name: "h100-sxm", gpuMemoryBytes: 80 * gib, hbmBytesPerSecond: 3350e9, gpuFlops: 989e12,
                        linkBytesPerSecond: 50e9, source: "NVIDIA H100 datasheet (SXM5); host link PCIe Gen5 x16, ~50 GB/s (estimate)"),
        HardwareProfile(name: "h200", gpuMemoryBytes: 141e9, hbmBytesPerSecond: 4800e9, gpuFlops: 989e12,
                        linkBytesPerSecond: 50e9, source: "NVIDIA H200 datasheet (SXM); host link PCIe Gen5 x16, ~50 GB/s (estimate)"),
        HardwareProfile(name: "l4", gpuMemoryBytes: 24 * gib, hbmBytesPerSecond: 300e9, gpuFlops: 121e12,
                        linkBytesPerSecond: 25e9, source: "NVIDIA L4 datasheet; PCIe Gen4 x16, ~25 GB/s pinned"),
        HardwareProfile(name: "a5000", gpuMemoryBytes: 24 * gib, hbmBytesPerSecond: 768e9, gpuFlops: 111e12,
                        linkBytesPerSecond: 25e9, source: "NVIDIA RTX A5000 datasheet; PCIe Gen4 x16, ~25 GB/s pinned"),
        HardwareProfile(name: "rtx4090", gpuMemoryBytes: 24 * gib, hbmBytesPerSecond: 1008e9, gpuFlops: 330e12,
                        linkBytesPerSecond: 25e9, source: "NVIDIA Ada Lovelace (AD102) whitepaper; PCIe Gen4 x16, ~25 GB/s pinned"),
        HardwareProfile(name: "rtx3060", gpuMemoryBytes: 12 * gib, hbmBytesPerSecond: 360e9, gpuFlops: 51e12,
                        linkBytesPerSecond: 25e9, source: "NVIDIA RTX 3060 12 GB specifications (GA106: 28 SMs at 1.777 GHz); PCIe Gen4 x16"),
        HardwareProfile(name: "rtx3080-mobile", gpuMemoryBytes: 16 * gib, hbmBytesPerSecond: 448e9, gpuFlops: 75e12,
                        linkBytesPerSecond: 25e9, source: "NVIDIA RTX 3080 Laptop GPU specifications (GA104: 48 SMs, boost 1.245-1.710 GHz by power limit; 1.5 GHz assumed); PCIe Gen4 x16"),
    ]

    /// - Throws: `ConfigError.unknownPreset` naming the presets and the closest one.
    public static func preset(_ name: String) throws -> HardwareProfile {
        guard let p = presets.first(where: { $0.name == name }) else {
            throw ConfigError.unknownPreset(kind: "hardware", name: name, known: presets.map(\.name))
        }
        return p
    }
}

extension HardwareProfile {
    public static var presetNames: [String] { presets.map(\.name) }
}
