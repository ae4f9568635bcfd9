import Yams

/// `hardware.tiers`: the memory tiers as an ordered list, slowest first, each with its capacity and its read link to
/// the next faster tier (docs/tiers.md). It sets the same fields as the flat keys (`ssd`, `host_expert_bytes`, ...),
/// which sweeps and `--set` address one by one.
///
///     tiers:
///       - {tier: ssd, drive: pcie4-nvme}                     # its link reads into host memory
///       - {tier: host, capacity_bytes: 256e9}                # its link is the GPU's host link
///       - {tier: gpu}                                        # its capacity is the run's budget
enum TierList {
    enum Tier: String, CaseIterable { case ssd, host, gpu }

    /// What each tier's keys set, as the hardware field of the same meaning.
    static let fields: [Tier: KeyValuePairs<String, String>] = [
        .ssd: ["drive": "ssd", "read_bytes_per_s": "ssd_bytes_per_s", "read_latency_s": "ssd_latency_s",
               "queue_depth": "ssd_queue_depth", "capacity_bytes": "ssd_capacity_bytes"],
        .host: ["capacity_bytes": "host_expert_bytes", "pool": "memory_pool", "eviction": "host_eviction", "read_bytes_per_s": "link_bytes_per_s",
                "read_latency_s": "link_latency_s", "queue_depth": "copy_engines"],
        .gpu: ["memory_bytes": "gpu_memory_bytes"],
    ]

    /// The flat keys the list stands for: a section gives one form or the other.
    static var flatKeys: Set<String> { ["ssd", "ssd_bytes_per_s", "ssd_latency_s", "ssd_queue_depth", "ssd_capacity_bytes",
                                        "host_expert_bytes", "memory_pool", "host_eviction"] }

    /// Reads the list `node` into `profile`.
    /// - Throws: `ConfigError.file` naming the line: tiers out of order or repeated, an unknown tier or key, an SSD
    ///   tier without a link or without a host tier above it, a host tier of limited size without an SSD below it,
    ///   a list that does not end with the GPU.
    static func apply(_ node: Node, section: Node, to profile: inout HardwareProfile, file: YAMLFile) throws {
        let shape = "a list, slowest first: [{tier: ssd, drive: pcie4-nvme}, {tier: host, capacity_bytes: 256e9}, {tier: gpu}]"
        guard let list = node.sequence else { throw file.fail(node, "hardware.tiers must be \(shape)") }
        if let flat = section.mapping?.first(where: { flatKeys.contains($0.key.scalar?.string ?? "") }) {
            throw file.fail(flat.key, "hardware.\(flat.key.scalar?.string ?? "") and hardware.tiers both set the tiers: give one or the other")
        }
        var seen: [(tier: Tier, node: Node, keys: Set<String>)] = []
        for entry in list {
            guard let mapping = entry.mapping, let nameNode = mapping["tier"], let name = nameNode.scalar?.string else {
                throw file.fail(entry, "each entry of hardware.tiers is a mapping with 'tier: ssd', 'tier: host' or 'tier: gpu'")
            }
            guard let tier = Tier(rawValue: name) else {
                throw file.fail(nameNode, "unknown tier '\(name)': the tiers are ssd, host and gpu")
            }
            if seen.contains(where: { $0.tier == tier }) { throw file.fail(nameNode, "tier \(name) is listed twice") }
            if let faster = seen.last(where: { Tier.allCases.firstIndex(of: $0.tier)! > Tier.allCases.firstIndex(of: tier)! }) {
                throw file.fail(nameNode, "tiers out of order: \(name) after \(faster.tier.rawValue); list them slowest first (ssd, host, gpu)")
            }
            var keys: Set<String> = []
            for (keyNode, value) in mapping {
                guard let key = keyNode.scalar?.string, key != "tier" else { continue }
                let known = fields[tier]!
                guard let field = known.first(where: { $0.key == key })?.value else {
                    let names = known.map(\.key).joined(separator: ", ")
                    throw file.fail(keyNode, "hardware.tiers: the \(name) tier takes \(names.isEmpty ? "no keys" : names), not '\(key)'"
                                    + (tier == .gpu && key == "capacity_bytes" ? " (the GPU tier's capacity is the run's budget)" : ""))
                }
                guard let text = value.scalar?.string else { throw file.fail(value, "hardware.tiers: \(name).\(key) must be a single value") }
                do { try profile.set(field, to: text, origin: file.path) } catch let e as ConfigError {
                    throw file.fail(keyNode, "hardware.tiers: \(name).\(key): " + e.description.replacingOccurrences(of: "\(file.path): ", with: ""))
                }
                keys.insert(key)
            }
            seen.append((tier, entry, keys))
        }
        guard let top = seen.last, top.tier == .gpu else {
            throw file.fail(list.last ?? node, "hardware.tiers ends with the GPU: add {tier: gpu} last")
        }
        let ssd = seen.first { $0.tier == .ssd }, host = seen.first { $0.tier == .host }
        if let ssd {
            guard ssd.keys.contains("drive") || ssd.keys.contains("read_bytes_per_s") else {
                throw file.fail(ssd.node, "hardware.tiers: the ssd tier has no link: give a drive (\(SSDDrive.presets.map(\.name).joined(separator: ", "))) or read_bytes_per_s")
            }
            guard let host, host.keys.contains("capacity_bytes") else {
                throw file.fail(host?.node ?? ssd.node, "hardware.tiers: the SSD reads into host memory: give the host tier between them its capacity_bytes (host memory for experts)")
            }
        } else if let host, host.keys.contains("capacity_bytes") {
            throw file.fail(host.node, "hardware.tiers: a host tier of limited capacity needs an ssd tier below it, where the experts it cannot hold live")
        }
    }

    /// The entry of a tiers list where flat field `key` is set, for errors found after parsing.
    static func entry(setting key: String, in list: Node) -> Node? {
        list.sequence?.first { entry in
            guard let name = entry.mapping?["tier"]?.scalar?.string, let tier = Tier(rawValue: name), let own = fields[tier] else { return false }
            return own.contains { $0.value == key }
        }
    }
}

extension HardwareProfile {
    public static func setStructured(_ key: String, _ value: Node, section: Node, on profile: inout HardwareProfile, path: String) throws -> Bool {
        guard key == "tiers" else { return false }
        try TierList.apply(value, section: section, to: &profile, file: YAMLFile(path: path))
        return true
    }
}
