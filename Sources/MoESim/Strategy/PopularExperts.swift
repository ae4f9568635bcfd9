/// Fiddler's placement (arXiv 2402.07033): the experts the trace routes to most often (ties: lower id), as many as
/// each partition holds. Fiddler profiles popularity offline; using the replayed trace itself is the optimistic
/// stand-in (docs/policies.md).
///
/// `static-frequency` places the same way from the counts of a training part; where the experts used do not all fit,
/// it leaves `reserveBytes` of the partition free for the copies of those it did not place.
public struct PopularExperts: Placement {
    let reserveBytes: Int

    public init(reserveBytes: Int = 0) { self.reserveBytes = reserveBytes }

    public func place(_ budget: PlacementBudget) -> [Int32] {
        let uses = budget.uses()
        var room = budget.room(placing: uses.indices.lazy.filter { uses[$0] > 0 }, reserving: reserveBytes)
        var placed: [Int32] = []
        for e in uses.indices.sorted(by: { (uses[$0], $1) > (uses[$1], $0) }) where uses[e] > 0 {
            let p = Int(budget.partitionOf[e])
            if room[p] >= budget.expertBytes { room[p] -= budget.expertBytes; placed.append(Int32(e)) }
        }
        return placed
    }
}
