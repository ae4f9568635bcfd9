/// `n-cpu-moe` (llama.cpp's `--n-cpu-moe N`): the experts of the first `cpuLayers` layers stay in host memory and
/// run on the host CPU; the other layers' experts are placed on the GPU, layer by layer from the first GPU layer,
/// as many as the budget holds (leaving `reserveBytes` of a partition free when its experts do not all fit).
///
///     LayerPlacement(cpuLayers: 10, experts: 8, reserveBytes: 0)
public struct LayerPlacement: Placement {
    let cpuLayers: Int
    let experts: Int
    let reserveBytes: Int

    public init(cpuLayers: Int, experts: Int, reserveBytes: Int) {
        self.cpuLayers = cpuLayers; self.experts = experts; self.reserveBytes = reserveBytes
    }

    public func place(_ budget: PlacementBudget) -> [Int32] {
        let gpuExperts = min(cpuLayers * experts, budget.partitionOf.count)..<budget.partitionOf.count
        var room = budget.room(placing: gpuExperts, reserving: reserveBytes)
        var placed: [Int32] = []
        for e in gpuExperts {
            let p = Int(budget.partitionOf[e])
            if room[p] >= budget.expertBytes { room[p] -= budget.expertBytes; placed.append(Int32(e)) }
        }
        return placed
    }

    /// llama.cpp users' choice: the fewest layers on the CPU that let every other layer's experts fit in the budget.
    public static func fewestCPULayers(layers: Int, experts: Int, expertBytes: Int, budgetBytes: Int) -> Int {
        max(0, layers - budgetBytes / max(1, experts * expertBytes))
    }
}

/// A miss in the first `cpuLayers` layers runs on the host CPU; elsewhere it becomes what `rest` says: a copy on
/// demand, or host compute too.
public struct HostLayers: MissHandler {
    let firstGPUExpert: Int32
    let rest: PlacementOptions.Rest

    public init(cpuLayers: Int, experts: Int, rest: PlacementOptions.Rest) {
        firstGPUExpert = Int32(cpuLayers * experts); self.rest = rest
    }

    public func decide(_ miss: Miss, _ resources: MissResources) -> MissDecision {
        miss.expert < firstGPUExpert || rest == .cpu ? .host : .copy
    }
}
