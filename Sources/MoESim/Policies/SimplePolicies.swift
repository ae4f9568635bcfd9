/// `on-demand`: no cache across layers. Experts are loaded when the gate asks, computed once all have landed, and
/// freed after the layer: Pre-gated MoE's MoE-OnDemand baseline (arXiv 2308.12066).
public struct OnDemandPolicy: CachePolicy {
    public init() {}
    public static var releasesAfterLayer: Bool { true }
    public static var computesAfterAllCopies: Bool { true }
    public mutating func didInsert(_ expert: Int32, at access: Int) {}
    public mutating func didEvict(_ expert: Int32) {}
    /// Never needed: memory is empty at every layer start, and the budget holds the largest layer.
    public mutating func victim(in partition: Int, pinned: PinSet) -> Int32? { nil }
}

/// `all-resident`: every expert lives on the GPU from the start (`EveryExpert` places them), so no access misses:
/// the compute-only bound. Nothing is ever evicted.
public struct AllResidentPolicy: CachePolicy {
    public init() {}
    public mutating func didInsert(_ expert: Int32, at access: Int) {}
    public mutating func didEvict(_ expert: Int32) {}
    public mutating func victim(in partition: Int, pinned: PinSet) -> Int32? { nil }
}
