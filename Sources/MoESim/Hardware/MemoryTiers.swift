/// The memory below the GPU (docs/tiers.md): host memory that holds experts, and under it an SSD that holds them
/// all, read into host memory over its own link. The tiers, slowest first: `ssd`, `host`, `gpu`; each reads from the
/// one below over a link (SSD → host: this drive; host → GPU: `HardwareProfile.linkBytesPerSecond`).
///
///     hardware: {preset: h100-sxm, host_expert_bytes: 256e9, ssd: pcie4-nvme}
///
/// The default is two tiers: every expert in host memory (`hostExpertBytes` 0), no SSD.
public struct MemoryTiers: Equatable, Sendable {
    /// Host memory given to experts, the host tier's capacity; 0: every expert (no SSD tier).
    public var hostExpertBytes: Double = 0
    /// The SSD's read link into host memory: bandwidth (0: no SSD), fixed cost per read, and reads under way at once
    /// (its queue depth), which share the bandwidth (`Link`).
    public var ssdBytesPerSecond: Double = 0
    public var ssdLatencySeconds: Double = 0
    public var ssdQueueDepth: Int = 1
    /// The drive's capacity for experts (0: as large as they need).
    public var ssdCapacityBytes: Double = 0
    /// `unified`: host memory and GPU memory are one pool (Apple silicon, Grace Hopper's coherent memory, an APU):
    /// the GPU's expert budget is taken from `hostExpertBytes`, so a larger GPU cache leaves a smaller host tier.
    public var pool: MemoryPool = .separate
    /// The host tier's cache rule (a registry eviction rule; LRU unless set).
    public var hostEviction: HostEviction = .lru
    /// The drive preset the SSD fields came from ("" when set by hand).
    public var drive = ""

    public init() {}

    /// Whether experts live in three tiers (an SSD under a host tier of limited size).
    public var hasSSD: Bool { ssdBytesPerSecond > 0 }

    /// The host tier's capacity for experts beside a GPU expert budget of `budgetBytes`.
    public func hostCapacity(budgetBytes: Int) -> Double {
        pool == .unified ? hostExpertBytes - Double(budgetBytes) : hostExpertBytes
    }

    /// Checks that the tiers can hold the model: each a capacity of at least one expert, a link below a host tier of
    /// limited size, a drive that holds every expert, and a shared pool with room for both caches.
    /// - Throws: `ConfigError.invalidValue` naming the field.
    func validate(expertBytes: Int, totalExpertBytes: Int, budgetBytes: Int) throws {
        func fail(_ key: String, _ value: String, _ expected: String) -> ConfigError {
            .invalidValue(field: "hardware.\(key)", value: value, expected: expected)
        }
        let gib = { (b: Double) in String(format: "%.3g GiB", b / 1_073_741_824) }
        guard hostExpertBytes > 0 || !hasSSD else {
            throw fail("host_expert_bytes", "0", "the host tier's capacity when an SSD is given (ssd_bytes_per_s): with every expert in host memory the SSD is never read")
        }
        guard hostExpertBytes > 0 else {
            guard hostEviction == .lru else {
                throw fail("host_eviction", hostEviction.rawValue, "a host tier of limited size (host_expert_bytes, with an SSD below it) for its cache rule to rank: with every expert in host memory nothing is evicted")
            }
            return
        }
        guard hasSSD else {
            throw fail("ssd_bytes_per_s", "0", "a link from the SSD (ssd_bytes_per_s, or ssd: a drive) below a host tier of \(gib(hostExpertBytes)): the experts it cannot hold live on the SSD")
        }
        if ssdCapacityBytes > 0 && ssdCapacityBytes < Double(totalExpertBytes) {
            throw fail("ssd_capacity_bytes", gib(ssdCapacityBytes), "room for every expert (\(gib(Double(totalExpertBytes)))): the SSD holds them all")
        }
        let host = hostCapacity(budgetBytes: budgetBytes)
        if host < Double(expertBytes) {
            throw fail("host_expert_bytes", gib(hostExpertBytes), pool == .unified
                ? "room for the GPU's expert budget (\(gib(Double(budgetBytes)))) and at least one expert (\(gib(Double(expertBytes)))) in the shared pool"
                : "room for at least one expert (\(gib(Double(expertBytes))))")
        }
    }
}

/// Whether host and GPU memory are separate, or one pool (`MemoryTiers.pool`).
public enum MemoryPool: String, CaseIterable, Sendable {
    case separate, unified
}

/// An SSD's published read figures (docs/profiles.md, "Drives").
public struct SSDDrive: Sendable {
    public let name: String
    public let readBytesPerSecond: Double
    public let latencySeconds: Double
    public let queueDepth: Int
    public let source: String

    /// Sequential read rates from the manufacturers' datasheets; latency 100 µs per read and 32 reads at once are
    /// round figures of NVMe and AHCI queueing, the same for every drive (docs/profiles.md).
    public static let presets: [SSDDrive] = [
        SSDDrive(name: "sata-ssd", readBytesPerSecond: 560e6, latencySeconds: 100e-6, queueDepth: 32,
                 source: "Samsung 870 EVO datasheet: sequential read up to 560 MB/s (SATA 6 Gb/s)"),
        SSDDrive(name: "pcie3-nvme", readBytesPerSecond: 3500e6, latencySeconds: 100e-6, queueDepth: 32,
                 source: "Samsung 970 EVO Plus / 970 PRO datasheets: sequential read up to 3,500 MB/s (PCIe 3.0 x4)"),
        SSDDrive(name: "pcie4-nvme", readBytesPerSecond: 7450e6, latencySeconds: 100e-6, queueDepth: 32,
                 source: "Samsung 990 PRO datasheet: sequential read up to 7,450 MB/s (PCIe 4.0 x4)"),
        SSDDrive(name: "pcie5-nvme", readBytesPerSecond: 14500e6, latencySeconds: 100e-6, queueDepth: 32,
                 source: "Crucial T705 datasheet: sequential read up to 14,500 MB/s (PCIe 5.0 x4)"),
    ]
}

extension MemoryTiers {
    /// Sets the SSD fields from drive preset `name` (`none`: no SSD).
    public mutating func useDrive(_ name: String) throws {
        if name == "none" {
            ssdBytesPerSecond = 0; drive = ""
            return
        }
        guard let d = SSDDrive.presets.first(where: { $0.name == name }) else {
            throw ProfileField<HardwareProfile>.FieldError(expected: "a drive: " + (SSDDrive.presets.map(\.name) + ["none"]).joined(separator: ", "))
        }
        ssdBytesPerSecond = d.readBytesPerSecond
        ssdLatencySeconds = d.latencySeconds
        ssdQueueDepth = d.queueDepth
        drive = d.name
    }
}
