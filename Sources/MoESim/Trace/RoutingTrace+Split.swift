/// Splitting a trace by sequence, for placements learnt on one part and measured on the other.
extension RoutingTrace {
    /// The fewest sequences a split takes: one on each side.
    public static let sequencesToSplit = 2

    /// How many sequences the trace holds.
    public var sequenceCount: Int { Set(seq).count }

    /// - Throws: `ConfigError.invalidValue` when a trace of `sequences` sequences cannot be split.
    public func checkSplittable(sequences: Int, trainShare: Double) throws {
        guard sequences >= Self.sequencesToSplit else {
            throw ConfigError.invalidValue(field: "placement.train_split", value: "\(trainShare)",
                                           expected: "a trace of at least two sequences to split (\(name) has \(sequences))")
        }
    }

    /// The first `round(trainShare × sequences)` sequences (in order of first appearance, at least one) and the rest
    /// (at least one), each token kept whole with its weights, predictions and arrival.
    /// - Throws: `ConfigError.invalidValue` when the trace has fewer than two sequences.
    public func split(trainShare: Double) throws -> (train: RoutingTrace, test: RoutingTrace) {
        var order: [Int32] = [], seen = Set<Int32>()
        for s in seq where seen.insert(s).inserted { order.append(s) }
        try checkSplittable(sequences: order.count, trainShare: trainShare)
        let k = min(order.count - 1, max(1, Int((trainShare * Double(order.count)).rounded())))
        let inTrain = Set(order.prefix(k))
        var train = RoutingTrace(header: header, name: name), test = RoutingTrace(header: header, name: name)
        var record = TokenRecord(layers: header.layers, topK: header.topK)
        for t in 0..<tokenCount {
            self.record(t, into: &record)
            if inTrain.contains(seq[t]) { train.append(record) } else { test.append(record) }
        }
        return (train, test)
    }
}
