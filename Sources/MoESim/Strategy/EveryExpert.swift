/// Every expert placed: `all-resident`, the compute-only bound (its budget is every expert's bytes).
public struct EveryExpert: Placement {
    public init() {}
    public func place(_ budget: PlacementBudget) -> [Int32] { (0..<Int32(budget.partitionOf.count)).map { $0 } }
}
