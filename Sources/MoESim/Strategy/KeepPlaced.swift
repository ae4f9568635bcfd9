/// A cache whose placed experts never leave: `Inner` ranks only the experts copied in later (static placement:
/// `static-frequency`, `n-cpu-moe`).
///
///     KeepPlaced(experts: 256, inner: LRUPolicy(cache: shape))
///
/// The placed experts are never handed to `Inner`, so it can never pick one as a victim.
public struct KeepPlaced<Inner: CachePolicy>: CachePolicy {
    var inner: Inner
    var placed: [Bool]
    /// Whether `Inner` holds the expert: a placed expert that a streaming layer freed and a later miss copied in
    /// again is ranked by `Inner` from then on.
    var ranked: [Bool]

    public init(experts: Int, inner: Inner) {
        self.inner = inner
        placed = Array(repeating: false, count: experts)
        ranked = Array(repeating: false, count: experts)
    }

    public mutating func didPlace(_ expert: Int32) { placed[Int(expert)] = true }

    public mutating func willInsert(_ expert: Int32) { inner.willInsert(expert) }

    public mutating func didInsert(_ expert: Int32, at access: Int) {
        ranked[Int(expert)] = true
        inner.didInsert(expert, at: access)
    }

    public mutating func didAccess(_ expert: Int32, at access: Int) {
        if !placed[Int(expert)] { inner.didAccess(expert, at: access) }
    }

    /// A placed expert that a streaming layer frees was never handed to `Inner`.
    public mutating func didEvict(_ expert: Int32) {
        guard ranked[Int(expert)] else { return }
        ranked[Int(expert)] = false
        inner.didEvict(expert)
    }

    public mutating func victim(in partition: Int, pinned: PinSet) -> Int32? { inner.victim(in: partition, pinned: pinned) }

    public func keepsForRun(_ expert: Int32) -> Bool { placed[Int(expert)] }
}
