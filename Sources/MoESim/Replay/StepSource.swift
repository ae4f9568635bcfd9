/// Steps the engine replays back to back: `steps` of `plan`, whatever the clock says in between. `following` is the
/// plan whose first step comes after the run's last one, when the source knows it (nil at the end, or for a
/// scheduler that decides each step from the clock): predictors that look across the step boundary read it.
/// `notBefore` is the earliest time the first step may start: a scheduler whose requests have not arrived yet lets
/// the GPU idle until then.
public struct StepRun {
    public let plan: StepPlan
    public let steps: Range<Int>
    public let following: StepPlan?
    public let notBefore: Int64

    public init(plan: StepPlan, steps: Range<Int>, following: StepPlan?, notBefore: Int64 = 0) {
        self.plan = plan; self.steps = steps; self.following = following; self.notBefore = notBefore
    }
}

/// Where the engine's steps come from: the scheduler (ENGINE.md). The engine asks at each step boundary, passing its
/// clock, so that a scheduler admitting requests as they arrive can decide the next step online; a source whose
/// order does not depend on time may hand out many steps at once.
///
///     var source = SequentialScheduler(plan)
///     while let run = try source.next(at: engine.now) { engine.replay(run) }
public protocol StepSource {
    /// The next steps to replay, starting at simulated time `now` (ns); nil when every request is done.
    mutating func next(at now: Int64) throws -> StepRun?
}

/// Batch 1, in the trace's order (SIMULATION.md): a sequence's prefill tokens are one step, each decode token one
/// step, sequences one after another. The order never depends on the clock, so each plan (the whole trace, or a
/// chunk of a streaming replay) is one run; the next chunk is read before the current one is replayed, so that
/// the step after a chunk's last is known (two chunks are held at a time: memory stays flat).
public struct SequentialScheduler: StepSource {
    private var current: StepPlan?
    private let nextPlan: () throws -> StepPlan?

    /// - Parameters:
    ///   - first: the first plan (the whole trace, or its first chunk).
    ///   - next: the following chunks, nil at the end.
    public init(_ first: StepPlan, next: @escaping () throws -> StepPlan? = { nil }) {
        current = first
        nextPlan = next
    }

    public mutating func next(at now: Int64) throws -> StepRun? {
        guard let plan = current else { return nil }
        current = try nextPlan()
        return StepRun(plan: plan, steps: 0..<plan.steps, following: current)
    }
}
