import COpenBLAS
import Foundation

/// Measures this host's expert FFN time with OpenBLAS and fits the CPU side of a hardware profile to it
/// (`moesim calibrate`, used by `cpu-fallback`).
///
///     let cal = HostCalibration.measure(model: mixtral, scale: 2, tokenCounts: [1, 4, 16, 64], runs: 3)
///     cal.fitted.hostFlops   // FLOP/s at large batches; hostBytesPerSecond: weight bytes streamed at batch 1
///
/// The fit is the roofline `CostModel.hostExpertCompute` uses: `t(n) = max(2·n·P / F, B / W)` with `P` the
/// expert's parameters and `B` its fp32 bytes. `W` comes from the smallest batch (weight streaming dominates),
/// `F` from the best FLOP rate over all batches; `points` keep each measurement beside the fit.
public struct HostCalibration: Sendable {
    public struct Point: Sendable {
        public let tokens: Int
        /// Median seconds of one expert forward pass over `tokens` tokens.
        public let seconds: Double
        public let fittedSeconds: Double
        /// Achieved GFLOP/s: 2·tokens·params / seconds / 1e9.
        public let gflops: Double

        init(tokens: Int, seconds: Double, params: Int, fittedSeconds: Double) {
            self.tokens = tokens; self.seconds = seconds; self.fittedSeconds = fittedSeconds
            gflops = HostCalibration.flopRate(tokens: tokens, params: params, seconds: seconds) / 1e9
        }
    }

    public let params: Int
    public let bytes: Int
    public let hidden: Int
    public let ffn: Int
    public let threads: Int
    public let points: [Point]
    public let hostFlops: Double
    public let hostBytesPerSecond: Double

    /// FLOP/s of one expert forward pass: 2 · tokens · params / seconds.
    static func flopRate(tokens: Int, params: Int, seconds: Double) -> Double { 2 * Double(tokens) * Double(params) / seconds }

    /// Sets OpenBLAS's thread count for this process (0 leaves OpenBLAS's default).
    public static func setThreads(_ n: Int) { if n > 0 { openblas_set_num_threads(Int32(n)) } }
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Runs `body` with OpenBLAS on one thread (numerics mode: its callers run in parallel themselves, and one
    /// thread's sums do not depend on the core count). Evaluations that overlap in one process (tests, a library
    /// user's threads) share the setting: the first sets it, the last puts back what was there before.
    static func withOneThread<T>(_ body: () throws -> T) rethrows -> T {
        oneThread.enter()
        defer { oneThread.leave() }
        return try body()
    }

    private static let oneThread = OneThreadScope()

    /// Times `ExpertFFN.forward` at the model's shape divided by `scale`, the median of `runs` per token count.
    public static func measure(model: ModelProfile, scale: Int, tokenCounts: [Int], runs: Int,
                               progress: ((_ tokens: Int, _ seconds: Double, _ gflops: Double) -> Void)? = nil) -> HostCalibration {
        let hidden = max(1, model.hidden / scale), ffn = max(1, model.expertFFN / scale)
        let expert = ExpertFFN(hidden: hidden, ffn: ffn, matrices: model.matrices, seed: 1)
        let params = model.matrices * hidden * ffn
        var rng = SplitMix64(seed: 2)
        var timed: [(Int, Double)] = []
        for n in tokenCounts {
            let x = rng.gaussians(n * hidden)
            _ = expert.forward(x, tokens: n)  // warm-up: page in the weights, start OpenBLAS's threads
            var samples: [Double] = []
            for _ in 0..<max(1, runs) {
                let start = DispatchTime.now().uptimeNanoseconds
                _ = expert.forward(x, tokens: n)
                samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            }
            let median = samples.sorted()[samples.count / 2]
            timed.append((n, median))
            progress?(n, median, flopRate(tokens: n, params: params, seconds: median) / 1e9)
        }
        return HostCalibration(params: params, hidden: hidden, ffn: ffn, threads: threads, timed: timed)
    }

    init(params: Int, hidden: Int, ffn: Int, threads: Int, timed: [(Int, Double)]) {
        self.params = params; self.hidden = hidden; self.ffn = ffn; self.threads = threads
        bytes = params * MemoryLayout<Float>.size
        let smallest = timed.min { $0.0 < $1.0 }!
        let bandwidth = Double(bytes) / smallest.1
        let flops = timed.map { Self.flopRate(tokens: $0.0, params: params, seconds: $0.1) }.max()!
        hostBytesPerSecond = bandwidth
        hostFlops = flops
        points = timed.map { n, t in
            Point(tokens: n, seconds: t, params: params,
                  fittedSeconds: max(2 * Double(n) * Double(params) / flops, Double(params * 4) / bandwidth))
        }
    }

    /// `base` with the measured host figures, renamed, as a YAML profile file that configs name by path
    /// (`hardware: host.yaml`): the same mapping a config writes inline.
    public func profileYAML(base: HardwareProfile, name: String, note: String) -> String {
        var lines = ["# Written by `moesim calibrate`: \(note)",
                     "# Fit: t(n) = max(2·n·params / host_flops, fp32 weight bytes / host_bytes_per_s)",
                     "#   tokens  measured_s  fitted_s"]
        for p in points {
            lines.append("#   \(String(format: "%6d  %.6g  %.6g", p.tokens, p.seconds, p.fittedSeconds))")
        }
        lines += ["preset: \(base.name)", "name: \(name)",
                  "host_flops: \(hostFlops.rounded())", "host_bytes_per_s: \(hostBytesPerSecond.rounded())",
                  "source: \"host CPU calibrated by moesim calibrate (\(threads) OpenBLAS threads, expert \(hidden)x\(ffn)); GPU and link from preset \(base.name)\""]
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The count of evaluations running with one OpenBLAS thread, and the setting before the first (`get` and `set`
/// reach OpenBLAS; a test gives its own).
final class OneThreadScope: @unchecked Sendable {
    private let lock = NSLock()
    private var running = 0
    private var before = 0
    private let get: () -> Int, set: (Int) -> Void

    init(get: @escaping () -> Int = { HostCalibration.threads }, set: @escaping (Int) -> Void = HostCalibration.setThreads) {
        self.get = get; self.set = set
    }

    func enter() {
        lock.lock()
        defer { lock.unlock() }
        if running == 0 { before = get(); set(1) }
        running += 1
    }

    func leave() {
        lock.lock()
        defer { lock.unlock() }
        running -= 1
        if running == 0 { set(before) }
    }
}
