/// Whether a token was processed in the prompt (prefill) or generated (decode).
public enum Phase: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case prefill = 0, decode = 1
    public var description: String { self == .prefill ? "prefill" : "decode" }
}

/// One token line of a trace, in a reusable buffer (the reader fills the same record for every line).
///
/// `experts` is layer-major, `topK` ids per layer; a cell whose routing is unknown (`null`) holds
/// `TokenRecord.missing` in every slot.
public struct TokenRecord: Sendable {
    public static let missing = UInt16.max

    public var seq = 0
    public var pos = 0
    public var phase = Phase.decode
    public var experts: [UInt16]
    public var weights: [Float]
    public var hasWeights = false
    /// Recorded predictions (`pred`): for layer l, `predicted[predictedStart[l] ..< predictedStart[l+1]]`.
    public var predicted: [UInt16] = []
    public var predictedStart: [Int32]
    public var hasPredictions = false
    /// When the sequence's request arrived (`arrival_s`, seconds), on its first line only; nil when not recorded.
    public var arrivalSeconds: Double?

    public init(layers: Int, topK: Int) {
        experts = Array(repeating: TokenRecord.missing, count: layers * topK)
        weights = Array(repeating: 0, count: layers * topK)
        predictedStart = Array(repeating: 0, count: layers + 1)
    }
}
