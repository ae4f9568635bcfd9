/// How each access was computed, for numerics mode (`ReplayEngine.precisionLog`).
public enum AccessPrecision: UInt8, Sendable {
    case full = 0
    case low = 1
    case cpu = 2
    /// Not computed: the miss handler skipped it.
    case skipped = 3
}
