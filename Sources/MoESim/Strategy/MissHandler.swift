/// Decides what a miss becomes: a full copy, a low-precision copy, host-CPU compute, or a skip (ENGINE.md, "Miss
/// handling is a plug-in"). The engine carries the decision out; the handler only chooses.
///
///     struct Threshold: MissHandler {
///         func decide(_ miss: Miss, _ resources: MissResources) -> MissDecision {
///             miss.weightMax < 0.1 ? .skip : .copy
///         }
///     }
///
/// `decide` is called once per miss, after the layer's hits were found and before any of its copies is issued;
/// `acceptsLowPrecisionHit` on a hit of an expert held in low precision. Handlers that always copy set
/// `alwaysCopies`, and the engine compiles the call away.
public protocol MissHandler {
    /// True for `FullCopy`: every miss is a full-precision copy and no resident expert is ever low precision.
    static var alwaysCopies: Bool { get }
    /// What the miss of `miss.expert` becomes, given the state of the link and the host CPU.
    mutating func decide(_ miss: Miss, _ resources: MissResources) -> MissDecision
    /// Whether a hit of an expert held in low precision is computed as it is (true), or the full version is copied
    /// in its place first (false: an upgrade, a demand copy).
    func acceptsLowPrecisionHit(_ hit: Miss) -> Bool
}

extension MissHandler {
    public static var alwaysCopies: Bool { false }
    public func acceptsLowPrecisionHit(_ hit: Miss) -> Bool { true }
}

/// What a handler knows of a miss: the expert, the tokens of the step routed to it, and their largest gate weight
/// (0 when the trace has none).
public struct Miss: Sendable, Equatable {
    public let expert: Int32
    public let tokens: Int32
    public let weightMax: Float
    /// The gate's time: when the miss is known.
    public let gate: Int64
}

/// The resources' state when a miss is decided: when a copy issued now would start on the link, and when the host
/// CPU frees.
public struct MissResources: Sendable, Equatable {
    public let linkFreeAt: Int64
    public let hostFreeAt: Int64
    /// When host memory can hold the expert: the gate, unless it is on the SSD (three tiers: its read's landing if
    /// known, else the gate plus one read alone on the drive).
    public let expertReadyAt: Int64

    public init(linkFreeAt: Int64, hostFreeAt: Int64, expertReadyAt: Int64) {
        self.linkFreeAt = linkFreeAt; self.hostFreeAt = hostFreeAt; self.expertReadyAt = expertReadyAt
    }
}

/// What a miss becomes.
public enum MissDecision: Sendable, Equatable {
    /// A demand copy of the full-precision expert.
    case copy
    /// A demand copy of a smaller, low-precision version of `bytes` bytes, computed as a low-precision access.
    case copyLow(bytes: Int)
    /// The expert computed on the host CPU: the activations go over and back, nothing is copied or admitted.
    case host
    /// The expert is not computed at all.
    case skip
}

/// Every miss is a full-precision copy: the handler of every caching strategy but `mixed-precision` and
/// `cpu-fallback`.
public struct FullCopy: MissHandler {
    public init() {}
    public static var alwaysCopies: Bool { true }
    @inline(__always) public func decide(_ miss: Miss, _ resources: MissResources) -> MissDecision { .copy }
}
