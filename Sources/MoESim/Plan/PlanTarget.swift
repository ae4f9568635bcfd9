/// What `moesim plan` must reach (docs/plan.md): a speed to reach or a latency to stay under, or the best of either
/// within the GPU's memory, read from a replay's report as its column reads it.
///
///     let target = try PlanTarget.parse("tokens_per_s=5")
///     target.meets(result, margin: 0.3)   // 5 × 1.3 tokens/s or more
public struct PlanTarget: Sendable, Equatable, CustomStringConvertible {
    public enum Metric: String, CaseIterable, Sendable {
        /// Output tokens per second (`output_tokens_per_s` when served, else `tokens_per_s`).
        case tokensPerSecond = "tokens_per_s"
        /// Time per output token, p99 (`request_tpot_p99_s` when served, else `tpot_p99_s`).
        case tpotP99 = "tpot_p99_s"
        /// Time to first token, p99 (`request_ttft_p99_s` when served, else over sequences' first steps).
        case ttftP99 = "ttft_p99_s"
        /// Requests per second that meet the SLOs (`goodput_rps`; needs `serving.slo_*`).
        case goodput = "goodput_rps"

        /// Whether more is better (a speed) or less (a latency).
        public var higherIsBetter: Bool { self == .tokensPerSecond || self == .goodput }
    }

    public let metric: Metric
    public let value: Double
    /// `METRIC=best`: no figure to reach; the best figure within the GPU's memory (a plan then replays each strategy
    /// at the most experts that fit and picks the best).
    public let best: Bool

    public init(_ metric: Metric, _ value: Double) { self.metric = metric; self.value = value; best = false }

    /// The best figure of `metric` reachable.
    public static func best(_ metric: Metric) -> PlanTarget { PlanTarget(metric, best: true) }

    private init(_ metric: Metric, best: Bool) { self.metric = metric; value = .nan; self.best = best }

    /// `METRIC=VALUE`, e.g. `tokens_per_s=5`, `tpot_p99_s=0.05`.
    /// - Throws: `ConfigError.invalidValue` naming what is expected.
    public static func parse(_ text: String) throws -> PlanTarget {
        let names = Metric.allCases.map(\.rawValue).joined(separator: ", ")
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let metric = Metric(rawValue: parts[0].trimmingCharacters(in: .whitespaces)) else {
            throw ConfigError.invalidValue(field: "--target", value: text, expected: "METRIC=VALUE with METRIC one of \(names)")
        }
        if parts[1].trimmingCharacters(in: .whitespaces) == "best" { return .best(metric) }
        guard let v = DecimalText.double(parts[1].trimmingCharacters(in: .whitespaces)), v > 0, v < 1e12 else {
            throw ConfigError.invalidValue(field: "--target", value: text, expected: "a positive number after '=' (e.g. \(metric.rawValue)=5), or best (the best within the GPU's memory)")
        }
        return PlanTarget(metric, v)
    }

    public var description: String { best ? "\(metric.rawValue)=best" : "\(metric.rawValue)=\(value)" }

    /// The figure a plan asks for with `margin` of headroom: a speed that much higher, a latency that much lower.
    public func goal(margin: Double) -> Double { metric.higherIsBetter ? value * (1 + margin) : value / (1 + margin) }

    /// The run's figure for this metric (nil when it has none: no decode step, no SLOs).
    public func measure(_ r: ReplayResult) -> Double? {
        switch metric {
        case .tokensPerSecond: r.serving?.outputTokensPerSecond ?? r.tokensPerSecond
        case .tpotP99: r.serving.map { $0.tpot.p99 } ?? r.tpotP99Seconds
        case .ttftP99: r.serving.map { $0.ttft.p99 } ?? r.ttftP99Seconds
        case .goodput: r.serving?.goodput
        }
    }

    /// Whether `figure` reaches `goal(margin:)`.
    public func meets(_ figure: Double?, margin: Double) -> Bool {
        guard let figure, !best else { return false }
        return metric.higherIsBetter ? figure >= goal(margin: margin) : figure <= goal(margin: margin)
    }

    /// How far `figure` is from the goal, as a share of it (positive: short of it).
    public func shortfall(_ figure: Double?, margin: Double) -> Double? {
        guard let figure, !best else { return nil }
        let goal = goal(margin: margin)
        return metric.higherIsBetter ? (goal - figure) / goal : (figure - goal) / goal
    }
}
