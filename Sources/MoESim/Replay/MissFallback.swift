/// How a miss may be served other than by copying the full-precision expert: in low precision (`mixed-precision`,
/// HOBBIT) or on the host CPU (`cpu-fallback`, Fiddler). Every other strategy uses `.none`.
///
/// Runtime rather than a generic parameter: it is consulted on misses and on hits of low-precision experts only,
/// where one predictable branch costs nothing next to the copy bookkeeping.
public enum MissFallback: Sendable, Equatable {
    case none
    /// Misses whose largest gate weight in the step is below `threshold` are copied at `lowBytes`.
    case lowPrecision(threshold: Float, lowBytes: Int, upgradeOnLowHit: Bool)
    /// Misses are computed on the host when the result is back sooner than a copy-then-compute would finish.
    case cpu
}

/// How each access was computed, for numerics mode (`ReplayEngine.precisionLog`).
public enum AccessPrecision: UInt8, Sendable {
    case full = 0
    case low = 1
    case cpu = 2
}
