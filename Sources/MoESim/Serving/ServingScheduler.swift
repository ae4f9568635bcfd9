/// The batched step sources (docs/serving.md): requests arrive, `static` or `continuous` batching forms each step
/// from the requests it admitted, and every request's queueing, first token and finish are logged.
///
///     let scheduler = try ServingScheduler(trace: trace, options: serving)
///     try engine.run(&scheduler)             // one step per call, decided from the engine's clock
///     ServingSummary(scheduler.log, …)
///
/// Each step is compiled from the trace on the fly (`StepPlanBuilder`): per layer the union of its tokens' experts,
/// each with its token count. A class so that the log can be read after the engine has run it.
///
/// KV cache: a request is admitted only when the KV cache of its whole context (prompt and output, known from the
/// trace) fits beside those admitted before, and it keeps that room until it finishes, so no request is ever
/// preempted; requests are admitted in arrival order, so one that does not fit holds back those behind it. With
/// several GPUs each holds the KV cache of its own sequences (seq mod G), with the room of one.
///
/// With `fixedOrder`, the steps of an earlier run are replayed in the same order and make-up (Belady needs the
/// order in advance: `ServedRun`), still waiting for requests that have not arrived.
public final class ServingScheduler: StepSource {
    /// One step: the token ranges of the trace it computes, and the requests they belong to.
    public struct Step: Sendable {
        public var parts: [Range<Int>] = []
        public var members: [Int] = []
        /// Tokens of context in the KV cache while the step runs: every admitted request's, up to this step.
        public var kvHeld: Int64 = 0
    }

    let trace: RoutingTrace
    let options: ServingOptions
    private let requests: [ServingRequest]
    public private(set) var log: ServingLog
    /// Every step handed out so far, in order.
    public private(set) var steps: [Step] = []
    /// Tokens of each request already in a step that was handed out.
    private var progress: [Int]
    /// Requests admitted, not finished, in admission order; the first not yet admitted.
    private var running: [Int] = []
    private var nextToAdmit = 0
    /// Closed loop: the next request not yet issued to a user.
    private var nextToIssue = 0
    private var pending: Step?
    private var finished = 0
    private let fixed: (plan: StepPlan, steps: [Step])?
    /// Tokens of KV cache each GPU has room for, and those reserved by the running requests on each GPU.
    private let kvRoomTokens: Int64
    private var kvReserved: [Int64]
    /// The step compiler's working memory, reused step after step.
    private let union: UnionScratch
    private let weights: Bool

    /// - Parameters:
    ///   - weights: whether the steps carry the gate weights (the strategy reads them).
    ///   - kvRoomTokens: tokens of context whose KV cache fits on a GPU beside the weights and the expert budget.
    ///   - kvPools: the GPUs, each holding the KV cache of the sequences seq mod `kvPools` with that room.
    ///   - fixedOrder: the steps of an earlier run to replay in order (nil: decide online).
    /// - Throws: `ConfigError` for invalid options, a trace that cannot be served as requests, or a request whose
    ///   KV cache does not fit alone.
    public init(trace: RoutingTrace, options: ServingOptions, weights: Bool = true, kvRoomTokens: Int64 = .max,
                kvPools: Int = 1, fixedOrder: [Step]? = nil) throws {
        try options.validate()
        self.trace = trace
        self.options = options
        self.kvRoomTokens = kvRoomTokens
        kvReserved = Array(repeating: 0, count: max(1, kvPools))
        union = UnionScratch(experts: trace.header.experts)
        self.weights = weights
        requests = try ServingRequest.all(in: trace)
        if let big = requests.first(where: { $0.kvTokens > kvRoomTokens }) {
            throw ConfigError.invalidValue(field: "serving", value: "sequence \(big.seq): \(big.kvTokens) tokens of context",
                                           expected: "requests whose KV cache fits on the GPU beside the expert budget (room for \(kvRoomTokens) tokens)")
        }
        log = ServingLog(requests)
        progress = Array(repeating: 0, count: requests.count)
        if let times = try options.arrivals.openArrivals(requests, in: trace) {
            log.arrival = times
            nextToIssue = requests.count
        } else if case let .closedLoop(users, _) = options.arrivals {
            for r in 0..<min(users, requests.count) { log.arrival[r] = 0 }
            nextToIssue = min(users, requests.count)
        }
        if let fixedOrder {
            var builder = StepPlanBuilder(trace, weights: weights)
            for step in fixedOrder { Self.add(step, of: requests, to: &builder) }
            fixed = (StepPlan(builder), fixedOrder)
        } else {
            fixed = nil
        }
    }

    /// The whole run as one plan, when the order is fixed (what Belady indexes).
    public var fixedPlan: StepPlan? { fixed?.plan }

    public func next(at now: Int64) throws -> StepRun? {
        if let step = pending { complete(step, at: now) }
        pending = nil
        guard finished < requests.count else { return nil }
        var step: Step, notBefore: Int64
        if let fixed {
            step = fixed.steps[steps.count]
            notBefore = step.members.filter { progress[$0] == 0 }.map { log.arrival[$0] }.max() ?? 0
            precondition(notBefore >= 0, "a fixed order serves a request before it is issued")
        } else {
            let start = admit(at: now)
            step = form()
            precondition(!step.members.isEmpty, "no request to serve while some are unfinished")
            notBefore = start
        }
        let begins = max(now, notBefore)
        for r in step.members where progress[r] == 0 { log.start[r] = begins }
        for (r, part) in zip(step.members, step.parts) { progress[r] += part.count }
        if fixed == nil { step.kvHeld = kvHeld() }  // a fixed order's steps keep the first pass's
        pending = step
        steps.append(step)
        if let fixed {
            return StepRun(plan: fixed.plan, steps: (steps.count - 1)..<steps.count, following: nil, notBefore: notBefore)
        }
        var builder = StepPlanBuilder(trace, reserving: step.parts.reduce(0) { $0 + $1.count }, scratch: union, weights: weights)
        Self.add(step, of: requests, to: &builder)
        return StepRun(plan: StepPlan(builder), steps: 0..<1, following: nil, notBefore: notBefore)
    }

    // MARK: Forming steps

    /// Admits arrived requests (waiting for the next arrival when none is running); returns when the step may start.
    private func admit(at now: Int64) -> Int64 {
        var clock = now
        if running.isEmpty, nextToAdmit < requests.count, log.arrival[nextToAdmit] > clock {
            clock = log.arrival[nextToAdmit]  // idle until the next request arrives
        }
        switch options.scheduler {
        case .sequential, .static:
            guard running.isEmpty else { return now }  // a static batch runs to completion
            let size = options.scheduler == .sequential ? 1 : options.batch
            while running.count < size && canAdmit(nextToAdmit, at: clock) { admitNext() }
        case .continuous:
            while running.count < options.maxSeqs && canAdmit(nextToAdmit, at: clock) { admitNext() }
        }
        return clock
    }

    /// Whether request `r` has arrived and its KV cache fits beside the running requests'.
    private func canAdmit(_ r: Int, at time: Int64) -> Bool {
        isWaiting(r, at: time) && kvReserved[pool(of: r)] + requests[r].kvTokens <= kvRoomTokens
    }

    /// The GPU whose KV cache holds request `r`'s context.
    private func pool(of r: Int) -> Int { Int(requests[r].seq) % kvReserved.count }

    private func admitNext() {
        running.append(nextToAdmit)
        kvReserved[pool(of: nextToAdmit)] += requests[nextToAdmit].kvTokens
        nextToAdmit += 1
    }

    /// Tokens of context the running requests hold in the KV cache: each up to its last token computed.
    private func kvHeld() -> Int64 {
        var held: Int64 = 0
        for r in running where progress[r] > 0 { held += Int64(trace.pos[requests[r].firstToken + progress[r] - 1]) + 1 }
        return held
    }

    private func isWaiting(_ r: Int, at time: Int64) -> Bool {
        r < requests.count && log.arrival[r] >= 0 && log.arrival[r] <= time
    }

    /// The next step of the running requests: a request in its prompt adds the rest of it (`continuous`: a chunk,
    /// within the step's token budget, after every decoding request's one token); one in its output, one token.
    private func form() -> Step {
        var step = Step()
        let continuous = options.scheduler == .continuous
        var budget = continuous ? options.maxTokens : Int.max
        for r in running where progress[r] >= requests[r].promptTokens {
            let t = requests[r].firstToken + progress[r]
            step.parts.append(t..<t + 1); step.members.append(r)
            budget -= 1
        }
        for r in running where progress[r] < requests[r].promptTokens && budget > 0 {
            let left = requests[r].promptTokens - progress[r]
            let n = continuous ? min(left, options.prefillChunk, budget) : left
            let t = requests[r].firstToken + progress[r]
            step.parts.append(t..<t + n); step.members.append(r)
            budget -= n
        }
        return step
    }

    /// Adds `step` to `builder`: its first steps are its members starting here; its later outputs, the output
    /// tokens of members past their first step (one each: a request adds one output token a step).
    private static func add(_ step: Step, of requests: [ServingRequest], to builder: inout StepPlanBuilder) {
        let prefill = step.parts.contains { builder.trace.phase[$0.lowerBound] == .prefill }
        var firstSteps = 0, laterOutputs = 0
        for (r, part) in zip(step.members, step.parts) {
            if requests[r].firstToken == part.lowerBound { firstSteps += 1 }
            else if builder.trace.phase[part.lowerBound] == .decode { laterOutputs += part.count }
        }
        builder.addStep(step.parts, phase: prefill ? .prefill : .decode, seq: requests[step.members[0]].seq,
                        firstSteps: firstSteps, laterOutputs: laterOutputs, kvHeld: step.kvHeld)
    }

    // MARK: Finishing steps

    /// The step handed out last ended at `now`: first tokens, finished requests, and a closed loop's next arrivals.
    private func complete(_ step: Step, at now: Int64) {
        for r in step.members {
            let request = requests[r], done = progress[r]
            if log.firstToken[r] < 0 && done >= max(1, request.promptTokens) { log.firstToken[r] = now }
            guard done == request.tokenCount else { continue }
            log.finish[r] = now
            finished += 1
            if let i = running.firstIndex(of: r) {  // admitted here (a fixed order admits nothing)
                running.remove(at: i)
                kvReserved[pool(of: r)] -= request.kvTokens
            }
            if case let .closedLoop(_, think) = options.arrivals, nextToIssue < requests.count {
                log.arrival[nextToIssue] = now + SimTime(seconds: think).nanoseconds
                nextToIssue += 1
            }
        }
    }
}
