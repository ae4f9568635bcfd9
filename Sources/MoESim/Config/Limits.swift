/// The largest and smallest inputs moesim accepts, stated once. Every reader enforces them: the JSON Lines, gzip
/// and binary trace readers, YAML configs and profile files, `--set` and sweep axes. docs/trace-format.md and
/// docs/config.md list them (a test keeps those tables in step with this file).
///
///     Limits.layers.contains(32)                   // true
///     try Limits.check(64, in: Limits.experts, "experts")
///
/// They are chosen so that nothing derived from valid inputs overflows: ids fit 16 bits with one value left for a
/// null cell, flat expert ids and access counts fit 32 bits, bytes and nanoseconds fit 63 bits with room to add.
public enum Limits {
    // MARK: Trace shape
    /// MoE layers of a trace or model.
    public static let layers = 1...1024
    /// Experts per layer: ids are 16-bit and 0xFFFF marks a null cell.
    public static let experts = 1...65_534
    /// Experts routed per token and layer (also at most `experts`).
    public static let topK = 1...1024
    /// Experts of all layers together (layers × experts): flat ids index dense arrays.
    public static let flatExperts = 1 << 22
    /// Routed ids per token (layers × top_k): one token line is held in memory at a time.
    public static let idsPerToken = 1 << 18
    /// Sequence numbers and positions, stored as 32-bit integers.
    public static let seq = 0...Int(Int32.max)
    public static let pos = 0...Int(Int32.max)
    /// Tokens of one trace.
    public static let tokens = Int(Int32.max)
    /// Routed ids (tokens × layers × top_k) of a trace held whole in memory: step plans index them with 32 bits.
    /// Longer traces replay with `--stream`.
    public static let routedIDs = Int(Int32.max)
    /// Gate weights: routing probabilities, possibly scaled (DeepSeek-V3 multiplies by 2.5).
    public static let gateWeight = 0.0...1e6

    // MARK: Budgets and time
    /// Expert memory budgets in bytes (1 EiB).
    public static let budgetBytes = 1 << 60
    /// Simulated time of one run, in nanoseconds (about 146 years): sums of durations stay inside 64 bits.
    public static let simulatedNanoseconds: Int64 = 1 << 62

    // MARK: Config files
    /// Size of one YAML file.
    public static let yamlBytes = 1 << 20
    /// Nesting of YAML collections (configs need 4).
    public static let yamlDepth = 64
    /// Nodes of one YAML file, aliases expanded.
    public static let yamlNodes = 100_000
    /// Cells of one sweep (traces × models × hardware × axis values × policies).
    public static let sweepCells = 1_000_000

    // MARK: Model profile fields
    public static let hidden = 1...(1 << 20)
    public static let expertFFN = 1...(1 << 20)
    public static let matrices = 2...3
    public static let sharedExperts = 0...64
    public static let sharedExpertFFN = 0...(1 << 20)
    public static let nonExpertParamsPerLayer = 0...(1 << 40)
    public static let bytesPerParam = 0.125...8.0
    /// Query or KV heads (0: attention not modelled), the width of a head, values cached per token and layer.
    public static let attentionHeads = 0...4096
    public static let headDim = 0...65536
    public static let kvCacheDim = 0...(1 << 20)
    /// Bytes of one expert (1 TiB) and of all experts or all resident weights (64 PiB), derived from the fields.
    public static let expertBytes = 1 << 40
    public static let modelBytes = 1 << 56

    // MARK: Hardware profile fields
    // Rates have no useful upper limit (1e30 B/s is an infinitely fast link, a valid what-if); their lower limits
    // and the run's worst-case time (`Limits.simulatedNanoseconds`) keep durations finite.
    public static let gpuMemoryBytes = 1.0...1e18
    public static let hbmBytesPerSecond = 1e3...1e30
    public static let gpuFlops = 1e3...1e30
    public static let linkBytesPerSecond = 1e3...1e30
    public static let linkLatencySeconds = 0.0...10
    public static let copyEngines = 1...64
    public static let kernelLaunchSeconds = 0.0...10
    public static let hostFlops = 1e3...1e30
    public static let hostBytesPerSecond = 1e3...1e30
    /// Memory tiers (docs/tiers.md): capacities (0: unlimited), the SSD's read rate (0: no SSD) and queue depth.
    public static let tierBytes = 0.0...1e18
    public static let ssdBytesPerSecond = 0.0...1e30
    public static let ssdQueueDepth = 1...1024
    /// Several GPUs (docs/multigpu.md): how many, and their interconnect's rate per direction per GPU (0: none).
    public static let gpus = 1...1024
    public static let gpusPerNode = 0...1024
    public static let interconnectBytesPerSecond = 0.0...1e30

    // MARK: Runtime profile fields
    /// Fixed costs per layer, per expert and per prediction (s), like a kernel launch's.
    public static let overheadSeconds = 0.0...10
    /// Achieved shares of a rate: above 0 (a zero rate would never finish), at most 1 (no faster than the datasheet).
    public static let achievedFraction = 1e-6...1.0
    /// Extra GPU memory traffic per low-bit weight that a dequantising runtime adds (bytes).
    public static let dequantBytesPerWeight = 0.0...1024

    // MARK: Strategy options
    public static let lookahead = 1...1024
    public static let accuracy = 0.0...1
    public static let prefetchBuffer = 0.0...1  // a share in (0, 1]
    public static let precisionThreshold = 0.0...1e6
    public static let lowBits = [2, 4, 8]
    public static let groupSize = 1...(1 << 20)

    // MARK: Placement
    /// `placement.train_split`, further checked to be strictly inside (0, 1).
    public static let trainSplit = 0.0...1
    /// `placement.redundant_experts`: extra replicas per layer (EPLB).
    public static let redundantExperts = 0...65536
    public static let cpuLayers = 0...(1 << 16)

    // MARK: Serving
    /// Requests batched at once (`serving.batch`, `serving.max_seqs`, closed-loop users).
    public static let batch = 1...4096
    /// Tokens per step and per prefill chunk.
    public static let stepTokens = 1...(1 << 20)
    /// Requests per second of a Poisson process, and a closed loop's think time (s).
    public static let arrivalRate = 1e-6...1e9
    public static let thinkSeconds = 0.0...1e6
    /// A trace's `arrival_s` (s).
    public static let arrivalSeconds = 0.0...1e9
    /// SLO targets (s): positive.
    public static let sloSeconds = 1e-9...1e6

    /// Checks `value` against `range`.
    /// - Throws: `ConfigError.invalidValue` naming `field` and the range.
    public static func check<T: Comparable & Sendable>(_ value: T, in range: ClosedRange<T>, _ field: String) throws {
        guard range.contains(value) else {
            throw ConfigError.invalidValue(field: field, value: "\(value)", expected: "a value in \(describe(range))")
        }
    }

    /// A range as docs and errors write it: `1 … 1024`, `1e+06 … 1e+30`, `0 … 2^40`.
    public static func describe<T>(_ range: ClosedRange<T>) -> String {
        "\(format(range.lowerBound)) … \(format(range.upperBound))"
    }

    private static func format<T>(_ v: T) -> String {
        if let d = v as? Double { return String(format: "%g", d) }
        if let i = v as? Int, i >= 1 << 20, i.nonzeroBitCount == 1 { return "2^\(i.trailingZeroBitCount)" }
        return "\(v)"
    }
}

/// Numbers as users write them in configs, `--set`, axes and budgets: plain decimal only. `Double(_:)` alone would
/// also take `0x10` (16), `nan`, `inf` and `1_0`, none of which a user means in a config.
public enum DecimalText {
    /// `[+-]digits[.digits][e[+-]digits]` (or `.digits`), finite and zero or normal; nil for anything else (a
    /// subnormal such as `1.5e-323` would round to 0 in single precision, or in the arithmetic it enters).
    public static func double(_ text: String) -> Double? {
        let s = text.trimmingCharacters(in: .whitespaces)
        var bytes = Array(s.utf8)[...]
        if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        func digits() -> Int {
            let n = bytes.prefix { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }.count
            bytes = bytes.dropFirst(n)
            return n
        }
        var mantissaDigits = digits()
        if bytes.first == UInt8(ascii: ".") { bytes = bytes.dropFirst(); mantissaDigits += digits() }
        guard mantissaDigits > 0 else { return nil }
        if bytes.first == UInt8(ascii: "e") || bytes.first == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
            guard digits() > 0 else { return nil }
        }
        guard bytes.isEmpty, let v = Double(s), v.isFinite, v == 0 || v.isNormal else { return nil }
        return v
    }

    /// A whole number written in decimal (`64`, `1e9`, `2.0`) that fits `Int`; nil otherwise.
    public static func integer(_ text: String) -> Int? {
        if let v = Int(text.trimmingCharacters(in: .whitespaces)) { return v }
        guard let d = double(text), d == d.rounded(), abs(d) < 9e18 else { return nil }
        return Int(d)
    }
}

import Foundation
