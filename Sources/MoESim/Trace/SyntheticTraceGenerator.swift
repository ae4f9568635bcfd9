import Foundation

/// Settings of a synthetic routing trace. Defaults reproduce the real Mixtral-8x7B statistics of PROFILES.md.
public struct SyntheticTraceSpec: Sendable, Equatable {
    public var tokens: Int
    public var sequences = 4
    /// Prompt tokens at the start of each sequence (capped at half the sequence).
    public var prefillTokens = 32
    /// Zipf exponent of each layer's expert popularity (0 = uniform).
    public var zipfSkew = 0.2
    /// Chance that a slot reuses an expert of the previous token at the same layer.
    public var reuse = 0.18
    /// Chance that a slot follows the affinity map from the previous layer's expert in the same slot.
    public var affinity = 0.25
    public var seed: UInt64 = 1

    public init(tokens: Int, seed: UInt64 = 1) { self.tokens = tokens; self.seed = seed }

    /// The settings as compact JSON, recorded in the trace header.
    var json: String {
        "{\"tokens\":\(tokens),\"sequences\":\(sequences),\"prefill_tokens\":\(prefillTokens),\"zipf_skew\":\(zipfSkew),"
            + "\"reuse\":\(reuse),\"affinity\":\(affinity),\"seed\":\(seed)}"
    }

    public func validate() throws {
        if tokens < 1 { throw ConfigError.invalidValue(field: "tokens", value: "\(tokens)", expected: "1 or more") }
        if sequences < 1 { throw ConfigError.invalidValue(field: "sequences", value: "\(sequences)", expected: "1 or more") }
        if prefillTokens < 0 { throw ConfigError.invalidValue(field: "prefill", value: "\(prefillTokens)", expected: "0 or more") }
        if !(zipfSkew >= 0) { throw ConfigError.invalidValue(field: "skew", value: "\(zipfSkew)", expected: "0 or more") }
        for (name, p) in [("reuse", reuse), ("affinity", affinity)] where !(p >= 0 && p <= 1) {
            throw ConfigError.invalidValue(field: name, value: "\(p)", expected: "a probability in [0, 1]")
        }
        if reuse + affinity > 1 {
            throw ConfigError.invalidValue(field: "reuse + affinity", value: "\(reuse + affinity)", expected: "at most 1")
        }
    }
}

/// Generates a seeded routing trace: per-layer Zipf popularity, temporal reuse, inter-layer affinity, prefill and
/// decode phases, several sequences.
///
///     try SyntheticTraceGenerator(model: mixtral, spec: SyntheticTraceSpec(tokens: 1000)).write(to: "t.jsonl.gz")
///
/// Each slot of a cell draws, in order of chance: an expert of the previous token at this layer (reuse), the affinity
/// partner of this slot's expert at the previous layer (affinity), or a Zipf draw over a per-layer random ranking
/// of experts; a draw already in the cell falls back to Zipf. Weights are normalised sorted exponential draws, the
/// shape of renormalised top-k softmax probabilities. The same model, spec and seed give the same bytes.
public struct SyntheticTraceGenerator {
    public let model: ModelProfile
    public let spec: SyntheticTraceSpec

    public init(model: ModelProfile, spec: SyntheticTraceSpec) throws {
        try model.validate()
        try spec.validate()
        self.model = model
        self.spec = spec
    }

    public var header: TraceHeader {
        TraceHeader(model: model.name, layers: model.layers, experts: model.experts, topK: model.topK,
                    source: "moesim trace gen (synthetic)", generator: spec.json)
    }

    /// Calls `emit` with every token in order.
    public func generate(_ emit: (TokenRecord) throws -> Void) rethrows {
        let L = model.layers, E = model.experts, K = model.topK
        var rng = SplitMix64(seed: spec.seed)
        // Per-layer ranking of experts and Zipf cumulative weights over ranks.
        var ranking: [[UInt16]] = []
        for _ in 0..<L {
            var order = (0..<E).map { UInt16($0) }
            for i in stride(from: E - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
            ranking.append(order)
        }
        var cumulative = [Double](repeating: 0, count: E)
        var total = 0.0
        for r in 0..<E { total += 1 / pow(Double(r + 1), spec.zipfSkew); cumulative[r] = total }
        for r in 0..<E { cumulative[r] /= total }
        // Affinity: a random partner in layer l for each expert of layer l-1.
        var partner: [[UInt16]] = [[]]
        for _ in 1..<max(L, 1) { partner.append((0..<E).map { _ in UInt16(rng.nextInt(below: E)) }) }

        func zipf(_ layer: Int, _ rng: inout SplitMix64) -> UInt16 {
            let u = rng.nextDouble()
            var lo = 0, hi = E - 1
            while lo < hi { let mid = (lo + hi) / 2; if cumulative[mid] > u { hi = mid } else { lo = mid + 1 } }
            return ranking[layer][lo]
        }

        var record = TokenRecord(layers: L, topK: K)
        record.hasWeights = true
        var previous = [UInt16](repeating: TokenRecord.missing, count: L * K)
        var drawn = [Double](repeating: 0, count: K)
        let perSequence = max(1, spec.tokens / spec.sequences)
        var produced = 0
        for s in 0..<spec.sequences where produced < spec.tokens {
            let length = s == spec.sequences - 1 ? spec.tokens - produced : min(perSequence, spec.tokens - produced)
            let prefill = min(spec.prefillTokens, length / 2)
            for p in 0..<length {
                record.seq = s
                record.pos = p
                record.phase = p < prefill ? .prefill : .decode
                for l in 0..<L {
                    let base = l * K
                    for j in 0..<K {
                        let u = rng.nextDouble()
                        var pick: UInt16
                        if u < spec.reuse && p > 0 {
                            pick = previous[base + rng.nextInt(below: K)]
                        } else if u < spec.reuse + spec.affinity && l > 0 {
                            pick = partner[l][Int(record.experts[base - K + j])]
                        } else {
                            pick = zipf(l, &rng)
                        }
                        while record.experts[base..<base + j].contains(pick) { pick = zipf(l, &rng) }
                        record.experts[base + j] = pick
                    }
                    var sum = 0.0
                    for j in 0..<K { drawn[j] = -log(1 - rng.nextDouble()); sum += drawn[j] }
                    drawn.sort(by: >)
                    for j in 0..<K { record.weights[base + j] = Float(drawn[j] / sum) }
                }
                for i in 0..<(L * K) { previous[i] = record.experts[i] }
                try emit(record)
            }
            produced += length
        }
    }

    /// Writes the trace to `path` (`.jsonl`, `.jsonl.gz` or `.moet`), atomically.
    public func write(to path: String) throws {
        _ = try RoutingTrace.write(header: header, to: path) { consume in try generate(consume) }
    }

    /// Builds the trace in memory (tests and benchmarks).
    public func makeTrace(name: String = "synthetic") -> RoutingTrace {
        var trace = RoutingTrace(header: header, name: name)
        generate { trace.append($0) }
        return trace
    }
}
