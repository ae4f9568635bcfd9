/// For every access, the index of the next access to the same expert: what an offline oracle sees.
///
///     let future = FutureIndex(plan)
///     future.nextUse[i]   // > i, or FutureIndex.never
///
/// Built in one backward pass over the plan. libCacheSim's Belady keeps the same `next_access_vtime`.
/// Memory: 4 bytes per access (a plan of 10 million accesses needs 40 MB).
public struct FutureIndex: Sendable {
    public static let never = Int32.max
    public let nextUse: [Int32]

    public init(_ plan: StepPlan) {
        precondition(plan.accesses < Int(Int32.max), "the future index supports fewer than 2^31 accesses")
        var next = [Int32](repeating: FutureIndex.never, count: plan.accesses)
        var seen = [Int32](repeating: FutureIndex.never, count: plan.layers * plan.experts)
        plan.accessExpert.withUnsafeBufferPointer { experts in
            next.withUnsafeMutableBufferPointer { out in
                var i = experts.count - 1
                while i >= 0 {
                    let e = Int(experts[i])
                    out[i] = seen[e]
                    seen[e] = Int32(i)
                    i -= 1
                }
            }
        }
        nextUse = next
    }
}
