/// What happened to each request of a served run, and the serving metrics drawn from it (docs/metrics.md).
public struct ServingLog: Sendable {
    /// Per request, in the trace's order (ns; -1 while not known).
    public internal(set) var arrival: [Int64]
    public internal(set) var start: [Int64]
    public internal(set) var firstToken: [Int64]
    public internal(set) var finish: [Int64]
    public let promptTokens: [Int]
    public let outputTokens: [Int]
    public let seq: [Int32]

    init(_ requests: [ServingRequest]) {
        let n = requests.count
        arrival = Array(repeating: -1, count: n); start = arrival; firstToken = arrival; finish = arrival
        promptTokens = requests.map(\.promptTokens); outputTokens = requests.map(\.outputTokens); seq = requests.map(\.seq)
    }

    public var requests: Int { seq.count }

    /// Seconds from arrival to the first step that serves the request.
    public func queueing(_ r: Int) -> Double { Double(start[r] - arrival[r]) * 1e-9 }
    /// Seconds from arrival to its first token: the end of the step that completes its prompt (of its first decode
    /// step when it has no prompt).
    public func ttft(_ r: Int) -> Double { Double(firstToken[r] - arrival[r]) * 1e-9 }
    /// Seconds per output token after the first; nil when no token follows the first.
    public func tpot(_ r: Int) -> Double? {
        let later = promptTokens[r] > 0 ? outputTokens[r] : outputTokens[r] - 1
        return later > 0 ? Double(finish[r] - firstToken[r]) * 1e-9 / Double(later) : nil
    }
    /// Seconds from arrival to the end of its last step.
    public func endToEnd(_ r: Int) -> Double { Double(finish[r] - arrival[r]) * 1e-9 }

    /// Whether request `r` meets `slo`: TTFT and TPOT (when it has one) at most the targets, compared in whole
    /// nanoseconds (each target rounded as times are, `SimTime(seconds:)`), so a time equal to its target meets it:
    /// `first − arrival ≤ ttft` and `finish − first ≤ tpot × tokens after the first`.
    public func meets(_ r: Int, _ slo: ServiceLevel) -> Bool {
        let ttftTarget = SimTime(seconds: slo.ttftSeconds).nanoseconds, tpotTarget = SimTime(seconds: slo.tpotSeconds).nanoseconds
        guard firstToken[r] - arrival[r] <= ttftTarget else { return false }
        let later = Int64(promptTokens[r] > 0 ? outputTokens[r] : outputTokens[r] - 1)
        guard later > 0 else { return true }
        let (budget, overflow) = tpotTarget.multipliedReportingOverflow(by: later)
        return overflow || finish[r] - firstToken[r] <= budget
    }

    /// The per-request CSV (`--requests-csv`).
    public static let header = ["request", "seq", "arrival_s", "start_s", "first_token_s", "finish_s", "prompt_tokens",
                                "output_tokens", "queue_s", "ttft_s", "tpot_s", "e2e_s", "meets_slo"]

    public func rows(slo: ServiceLevel?) -> [[String]] {
        (0..<requests).map { r in
            ["\(r)", "\(seq[r])", format(Double(arrival[r]) * 1e-9), format(Double(start[r]) * 1e-9),
             format(Double(firstToken[r]) * 1e-9), format(Double(finish[r]) * 1e-9), "\(promptTokens[r])",
             "\(outputTokens[r])", format(queueing(r)), format(ttft(r)), format(tpot(r)), format(endToEnd(r)),
             slo.map { meets(r, $0) ? "1" : "0" } ?? ""]
        }
    }
}

/// The run-level serving columns of a report.
public struct ServingSummary: Sendable {
    public let requests: Int
    public let requestsPerSecond: Double?
    public let outputTokensPerSecond: Double?
    public let meanBatch: Double?
    public let queueMeanSeconds: Double?
    public let ttft: Percentiles
    public let tpot: Percentiles
    public let endToEnd: Percentiles
    /// Requests meeting the SLO per second; nil without an SLO.
    public let goodput: Double?

    /// p50, p90 and p99 (nearest rank) of a per-request figure, in seconds.
    public struct Percentiles: Sendable {
        public let p50: Double?, p90: Double?, p99: Double?
        init(_ values: [Double]) {
            p50 = nearestRankPercentile(values, 0.50); p90 = nearestRankPercentile(values, 0.90)
            p99 = nearestRankPercentile(values, 0.99)
        }
    }

    /// - Parameter steps: the run's steps (for the mean batch).
    init(_ log: ServingLog, steps: [ServingScheduler.Step], simSeconds: Double, slo: ServiceLevel?) {
        let all = 0..<log.requests
        requests = log.requests
        let perSecond: (Double) -> Double? = { simSeconds > 0 ? $0 / simSeconds : nil }
        requestsPerSecond = perSecond(Double(log.requests))
        outputTokensPerSecond = perSecond(Double(log.outputTokens.reduce(0, +)))
        meanBatch = steps.isEmpty ? nil : Double(steps.reduce(0) { $0 + $1.members.count }) / Double(steps.count)
        queueMeanSeconds = log.requests > 0 ? all.map(log.queueing).reduce(0, +) / Double(log.requests) : nil
        ttft = Percentiles(all.map(log.ttft))
        tpot = Percentiles(all.compactMap(log.tpot))
        endToEnd = Percentiles(all.map(log.endToEnd))
        goodput = slo.flatMap { slo in perSecond(Double(all.filter { log.meets($0, slo) }.count)) }
    }
}
