/// `mixed-precision` (HOBBIT, arXiv 2411.01433): a miss whose largest gate weight in the step is below `threshold`
/// is copied as its low-precision version (`lowBytes`, e.g. int4), which memory then holds at that size; a hit of
/// such an expert by a step that needs it in full precision is accepted as it is, or upgraded by copying the full
/// version in its place (`upgradeOnLowHit`).
///
///     LowPrecisionCopy(threshold: 0.3, lowBytes: model.lowBytes(bits: 4), upgradeOnLowHit: false)
public struct LowPrecisionCopy: MissHandler {
    public let threshold: Float
    public let lowBytes: Int
    public let upgradeOnLowHit: Bool

    public init(threshold: Float, lowBytes: Int, upgradeOnLowHit: Bool) {
        self.threshold = threshold
        self.lowBytes = lowBytes
        self.upgradeOnLowHit = upgradeOnLowHit
    }

    public init(_ options: PrecisionOptions, model: ModelProfile) {
        self.init(threshold: Float(options.threshold), lowBytes: options.lowBytes(params: model.expertParams),
                  upgradeOnLowHit: options.lowHit == .upgrade)
    }

    @inline(__always) public func decide(_ miss: Miss, _ resources: MissResources) -> MissDecision {
        miss.weightMax < threshold ? .copyLow(bytes: lowBytes) : .copy
    }

    @inline(__always) public func acceptsLowPrecisionHit(_ hit: Miss) -> Bool {
        !(upgradeOnLowHit && hit.weightMax >= threshold)
    }
}
