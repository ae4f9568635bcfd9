/// `cpu-fallback` (Fiddler, arXiv 2402.07033): a miss is computed on the host CPU when its output is back on the GPU
/// no later than a copy issued now would land plus the GPU's compute; otherwise it is copied.
///
///     HostCompute(cost: CostModel(model: m, hardware: h))
///
/// The host time is the roofline `calibrate` fits, and the hidden states move each way over the link as short
/// separate transfers (CostModel). With one copy engine the copy estimate is exact; with several it is the time a
/// lone copy would take.
public struct HostCompute: MissHandler {
    let cost: CostModel

    public init(cost: CostModel) { self.cost = cost }

    public func decide(_ miss: Miss, _ resources: MissResources) -> MissDecision {
        let move = cost.activationTransfer(tokens: miss.tokens), work = cost.hostExpertCompute(tokens: miss.tokens)
        // Both need the expert in host memory (with three tiers it may first be read from the SSD).
        let back = max(miss.gate + move, resources.hostFreeAt, resources.expertReadyAt) + work + move
        let copied = max(miss.gate, resources.linkFreeAt, resources.expertReadyAt) + cost.expertCopy
            + cost.expertCompute(tokens: miss.tokens)
        return back <= copied ? .host : .copy
    }
}
