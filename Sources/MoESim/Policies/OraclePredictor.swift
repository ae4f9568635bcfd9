/// `oracle-prefetch`, the bound for prediction: the routing of the next `lookahead` layers, known exactly, continuing
/// across the step boundary into the next step's first layers (the oracle sees the future, the next token included;
/// source "oracle").
///
///     OraclePredictor(plan: plan, lookahead: 2)   // at layer l: layers l+1 and l+2, wrapping into the next step
public struct OraclePredictor: PrefetchPredictor {
    var plan: StepPlan
    /// The plan whose first step follows `plan`'s last (streaming), when known.
    var following: StepPlan?
    let lookahead: Int
    public var source: String { "oracle" }

    /// - Parameter lookahead: layers ahead, at most `layers` (a whole step).
    public init(plan: StepPlan, lookahead: Int) {
        self.plan = plan
        self.lookahead = min(max(1, lookahead), plan.layers)
    }

    public func predict(step: Int, layer: Int, revealed: UnsafeBufferPointer<Int32>, into proposals: inout ExpertList) {
        let reach = layer + lookahead, last = min(plan.layers - 1, reach)
        if layer < last { proposals.append(plan.accessExpert, in: plan.accessRange(step: step, layers: (layer + 1)...last)) }
        guard reach >= plan.layers else { return }
        let nextLayers = 0...(reach - plan.layers)
        if step + 1 < plan.steps {
            proposals.append(plan.accessExpert, in: plan.accessRange(step: step + 1, layers: nextLayers))
        } else if let next = following, next.steps > 0 {
            proposals.append(next.accessExpert, in: next.accessRange(step: 0, layers: nextLayers))
        }
    }

    public mutating func rebind(_ plan: StepPlan, following: StepPlan?) { self.plan = plan; self.following = following }
}
