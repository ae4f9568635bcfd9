/// What prefetch admission keeps between layers: the rule, the previous gate (for the deadline's layer time) and,
/// for `reuse`, the epoch each expert was last used in.
struct AdmissionState {
    let rule: PrefetchAdmission
    let layers: Int
    var previousGate: Int64 = -1
    let lastUsed: UnsafeMutablePointer<Int32>?

    init(rule: PrefetchAdmission, layers: Int, experts: Int) {
        self.rule = rule
        self.layers = layers
        lastUsed = rule.checksReuse ? .allocate(capacity: experts) : nil
        lastUsed?.initialize(repeating: .min, count: experts)  // never: no epoch minus at most L layers reaches it
    }

    func deallocate() { lastUsed?.deallocate() }
}

/// Prefetch admission (`PrefetchAdmission`; the rules in docs/simulation.md, "Prefetch admission").
extension ReplayCore {
    /// At a gate: the layer's experts are used in this epoch; the gate is the next layer's previous one.
    @inline(__always)
    mutating func noteGateForAdmission(_ gate: Int64, set: Range<Int>, _ plan: PlanColumns) {
        if let used = admission.lastUsed { for a in set { used[Int(plan.accessExpert[a])] = epoch } }
        admission.previousGate = gate
    }

    /// Layers from layer `l` forward to the layer of `e` (its next pass): 1 … L, a layer's own counting as L.
    @inline(__always)
    func layersAhead(of e: Int32, from l: Int) -> Int {
        let target = book.layer(of: e), layers = admission.layers
        let d = (target - l + layers) % layers
        return d == 0 ? layers : d
    }

    /// Whether the proposal `e`, made at layer `l`'s `gate`, is issued under the run's admission rule.
    @inline(never)
    mutating func admits(_ e: Int32, layer l: Int, gate: Int64, _ pinned: PinSet) -> Bool {
        let ahead = layersAhead(of: e, from: l)
        if admission.rule.checksDeadline && admission.previousGate >= 0 {
            // The copy queues behind every copy not yet started: estimated landing against the estimated gate.
            let servers = Int64(link.servers)
            let queued = Int64(link.queuedPrefetches.count) + 1
            let lands = link.earliestStart(after: gate) + (queued * cost.expertCopy + servers - 1) / servers
            let due = gate + Int64(ahead) * (gate - admission.previousGate)
            if lands > due { return false }
        }
        if admission.rule.checksReuse, !memory.fits(cost.expertBytes, in: memory.partition(of: e)),
           let victim = policy.victim(in: memory.partition(of: e), pinned: pinned) {
            // Due no later than the prediction, and recency speaks for the victim and not for the prediction.
            let victimAhead = layersAhead(of: victim, from: l)
            if victimAhead <= ahead && usedAtLastPass(victim, ahead: victimAhead) && !usedAtLastPass(e, ahead: ahead) {
                return false
            }
        }
        return true
    }

    /// Whether `e`, whose layer is `ahead` layers on, was used at its layer's previous pass (`ahead` = L: this
    /// layer's, whose experts are marked only after its proposals).
    @inline(__always)
    func usedAtLastPass(_ e: Int32, ahead: Int) -> Bool {
        admission.lastUsed![Int(e)] == epoch &- Int32(admission.layers - ahead)
    }
}
