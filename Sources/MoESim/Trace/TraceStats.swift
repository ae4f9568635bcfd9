/// Summary statistics of a routing trace: the figures that decide how well caching and prediction can work.
///
///     let stats = TraceStats(trace)
///     stats.temporalReuse.all   // P(expert used at token t is used again at t+1, same layer)
///
/// Definitions (docs/trace-format.md): popularity skew is the share of a layer's routings that go to its top 25%
/// of experts (uniform routing gives 0.25); temporal reuse is Σ|S_t ∩ S_t+1| / Σ|S_t| over adjacent tokens of one
/// sequence with both cells recorded; inter-layer recall is how many of layer l+1's top-k a conditional-frequency
/// predictor finds from layer l's set, learning online (token t is predicted from tokens before it only), against
/// predicting layer l+1's most popular experts so far.
public struct TraceStats: Sendable {
    public struct Reuse: Sendable { public var all: Double?; public var prefill: Double?; public var decode: Double? }
    public struct Spread: Sendable { public var mean: Double; public var min: Double; public var max: Double }
    /// Tokens since the same expert was last used at the same layer of the same sequence: the median over accesses
    /// that had such a use, and the shares of all accesses reused within 1 and within 8 tokens.
    public struct ReuseDistance: Sendable, Equatable {
        public var median: Double?
        public var within1: Double?
        public var within8: Double?
    }
    /// Distinct experts one layer uses in `window` consecutive tokens of a sequence (non-overlapping windows, a
    /// sequence's last one possibly shorter): the mean over windows and layers, and the largest layer's mean.
    public struct WorkingSet: Sendable, Equatable {
        public var window: Int
        public var mean: Double
        public var largestLayer: Double
    }

    public let tokens: Int
    public let sequences: Int
    public let prefillTokens: Int
    public let decodeTokens: Int
    public let missingCells: Int
    public let topQuarterShare: Spread
    public let temporalReuse: Reuse
    public let reuseDistance: ReuseDistance
    /// Windows of 8 and 64 tokens.
    public let workingSets: [WorkingSet]
    /// Mean recall of layer l+1's top-k by conditional frequency, and by popularity alone; nil with one layer.
    public let interLayerRecall: Double?
    public let interLayerBaseline: Double?
    /// Tokens the inter-layer figures were evaluated on (evenly spaced, at most `recallSample`).
    public let recallTokens: Int

    public init(_ trace: RoutingTrace, recallSample: Int = 4000) {
        let h = trace.header, L = h.layers, E = h.experts, K = h.topK, n = trace.tokenCount
        tokens = n
        missingCells = trace.missingCells
        prefillTokens = trace.phase.filter { $0 == .prefill }.count
        decodeTokens = n - prefillTokens
        var seqs = 0
        for t in 0..<n where t == 0 || trace.seq[t] != trace.seq[t - 1] { seqs += 1 }
        sequences = seqs

        // Popularity per layer.
        var counts = [Int](repeating: 0, count: L * E)
        for t in 0..<n {
            for l in 0..<L {
                guard let ids = trace.expertIDs(token: t, layer: l) else { continue }
                for e in ids { counts[l * E + Int(e)] += 1 }
            }
        }
        let top = max(1, (E + 3) / 4)
        var shares: [Double] = []
        for l in 0..<L {
            let layerCounts = counts[l * E..<(l + 1) * E].sorted(by: >)
            let total = layerCounts.reduce(0, +)
            if total > 0 { shares.append(Double(layerCounts.prefix(top).reduce(0, +)) / Double(total)) }
        }
        topQuarterShare = Spread(mean: shares.isEmpty ? 0 : shares.reduce(0, +) / Double(shares.count),
                                 min: shares.min() ?? 0, max: shares.max() ?? 0)

        // Temporal reuse t -> t+1.
        var kept = [0, 0, 0], offered = [0, 0, 0]  // all, prefill, decode
        if n > 1 {
            for t in 0..<(n - 1) where trace.seq[t] == trace.seq[t + 1] {
                let samePhase = trace.phase[t] == trace.phase[t + 1]
                let bucket = trace.phase[t + 1] == .prefill ? 1 : 2
                for l in 0..<L {
                    guard let a = trace.expertIDs(token: t, layer: l), let b = trace.expertIDs(token: t + 1, layer: l) else { continue }
                    let common = a.filter { b.contains($0) }.count
                    kept[0] += common; offered[0] += K
                    if samePhase { kept[bucket] += common; offered[bucket] += K }
                }
            }
        }
        func ratio(_ i: Int) -> Double? { offered[i] > 0 ? Double(kept[i]) / Double(offered[i]) : nil }
        temporalReuse = Reuse(all: ratio(0), prefill: ratio(1), decode: ratio(2))

        reuseDistance = Self.reuseDistance(trace)
        workingSets = [8, 64].map { Self.workingSet(trace, window: $0) }

        // Inter-layer predictability by conditional frequency.
        guard L > 1 else {
            interLayerRecall = nil; interLayerBaseline = nil; recallTokens = 0
            return
        }
        // Online (prequential): token t is predicted from the tokens before it, then counted.
        var pair = [Int32](repeating: 0, count: (L - 1) * E * E)
        var seen = [Int32](repeating: 0, count: L * E)
        let stride = max(1, n / max(1, recallSample))
        var found = 0, foundBaseline = 0, asked = 0, evaluated = 0
        var score = [Int](repeating: 0, count: E)
        func topK(_ value: (Int) -> Int) -> [Int] {
            Array((0..<E).sorted { (value($0), -$0) > (value($1), -$1) }.prefix(K))
        }
        for t in 0..<n {
            let evaluate = t % stride == 0 && t > 0
            if evaluate { evaluated += 1 }
            for l in 0..<(L - 1) {
                guard let a = trace.expertIDs(token: t, layer: l), let b = trace.expertIDs(token: t, layer: l + 1) else { continue }
                if evaluate {
                    for j in 0..<E { score[j] = 0 }
                    for i in a { let row = (l * E + Int(i)) * E; for j in 0..<E { score[j] += Int(pair[row + j]) } }
                    found += topK { score[$0] }.filter { b.contains(UInt16($0)) }.count
                    foundBaseline += topK { Int(seen[(l + 1) * E + $0]) }.filter { b.contains(UInt16($0)) }.count
                    asked += K
                }
                for i in a { for j in b { pair[(l * E + Int(i)) * E + Int(j)] += 1 } }
                for j in b { seen[(l + 1) * E + Int(j)] += 1 }
            }
        }
        recallTokens = evaluated
        interLayerRecall = asked > 0 ? Double(found) / Double(asked) : nil
        interLayerBaseline = asked > 0 ? Double(foundBaseline) / Double(asked) : nil
    }

    /// `ReuseDistance` over every recorded access (null cells skipped).
    static func reuseDistance(_ trace: RoutingTrace) -> ReuseDistance {
        let h = trace.header, L = h.layers, E = h.experts, n = trace.tokenCount
        var last = [Int](repeating: -1, count: L * E)  // token of the last use, -1: none in this sequence
        var histogram = [Int](repeating: 0, count: n + 1)
        var accesses = 0, reused = 0
        for t in 0..<n {
            if t > 0 && trace.seq[t] != trace.seq[t - 1] { for i in last.indices { last[i] = -1 } }
            for l in 0..<L {
                guard let ids = trace.expertIDs(token: t, layer: l) else { continue }
                for e in ids {
                    let slot = l * E + Int(e)
                    accesses += 1
                    if last[slot] >= 0 { histogram[t - last[slot]] += 1; reused += 1 }
                    last[slot] = t
                }
            }
        }
        guard accesses > 0 else { return ReuseDistance(median: nil, within1: nil, within8: nil) }
        var median: Double?
        if reused > 0 {  // the lower median of the distances, as a whole number of tokens
            var seen = 0
            for (d, count) in histogram.enumerated() {
                seen += count
                if 2 * seen >= reused { median = Double(d); break }
            }
        }
        let within = { (k: Int) in Double(histogram.prefix(k + 1).reduce(0, +)) / Double(accesses) }
        return ReuseDistance(median: median, within1: within(1), within8: within(8))
    }

    /// `WorkingSet` for windows of `window` tokens.
    static func workingSet(_ trace: RoutingTrace, window: Int) -> WorkingSet {
        let h = trace.header, L = h.layers, E = h.experts, n = trace.tokenCount
        var sums = [Int](repeating: 0, count: L), windows = 0
        var used = [Bool](repeating: false, count: L * E), distinct = [Int](repeating: 0, count: L)
        var start = 0
        for t in 0..<n {
            if t > 0 && (trace.seq[t] != trace.seq[t - 1] || t - start == window) {  // close the window
                for l in 0..<L { sums[l] += distinct[l] }
                windows += 1
                for i in used.indices { used[i] = false }; for l in 0..<L { distinct[l] = 0 }
                start = t
            }
            for l in 0..<L {
                for e in trace.expertIDs(token: t, layer: l) ?? [] where !used[l * E + Int(e)] {
                    used[l * E + Int(e)] = true
                    distinct[l] += 1
                }
            }
        }
        if n > 0 { for l in 0..<L { sums[l] += distinct[l] }; windows += 1 }
        guard windows > 0 else { return WorkingSet(window: window, mean: 0, largestLayer: 0) }
        let means = sums.map { Double($0) / Double(windows) }
        return WorkingSet(window: window, mean: means.reduce(0, +) / Double(L), largestLayer: means.max() ?? 0)
    }
}
