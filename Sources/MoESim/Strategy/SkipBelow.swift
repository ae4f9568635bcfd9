/// Expert skipping (HOBBIT's second threshold, arXiv 2411.01433; AdapMoE; "Not All Experts are Equal", arXiv
/// 2402.14800): a miss whose largest gate weight in the step is below `threshold` is not computed at all, and the
/// token's output lacks that expert's share (the kept weights are not renormalised); any other miss goes to
/// `inner`. A resident expert is computed whatever its weight: skipping saves copies, not compute.
///
///     SkipBelow(threshold: 0.1, inner: FullCopy())                 // `skip`
///     SkipBelow(threshold: 0.1, inner: LowPrecisionCopy(…))        // `mixed-skip`: skip, int4, or full
public struct SkipBelow<Inner: MissHandler>: MissHandler {
    public let threshold: Float
    public var inner: Inner

    public init(threshold: Float, inner: Inner) {
        self.threshold = threshold
        self.inner = inner
    }

    @inline(__always) public mutating func decide(_ miss: Miss, _ resources: MissResources) -> MissDecision {
        miss.weightMax < threshold ? .skip : inner.decide(miss, resources)
    }

    @inline(__always) public func acceptsLowPrecisionHit(_ hit: Miss) -> Bool { inner.acceptsLowPrecisionHit(hit) }
}
