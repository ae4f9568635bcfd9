import ArgumentParser
import Foundation
import MoESim

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure this host's expert FFN time with OpenBLAS and write a hardware profile with its CPU side.",
        discussion: """
            Times one expert's forward pass (SwiGLU or plain FFN, sgemm) at the model's shape divided by --scale over \
            several token counts, fits host_flops and host_bytes_per_s (the roofline cpu-fallback uses: \
            max(2·tokens·params / host_flops, weight bytes / host_bytes_per_s)), and writes BASE's profile with them \
            as a YAML file. Name that file where a hardware preset goes: `hardware: host.yaml` in a config, or \
            `moesim replay --hardware host.yaml`.
            """)

    @Option(help: "Model preset whose expert shape is timed.")
    var model: String = "mixtral-8x7b"

    @Option(help: "Divide hidden and FFN sizes by this (1 = full size; larger is faster to measure).")
    var scale: Int = 2

    @Option(help: "Token counts to time, comma-separated.")
    var tokens: String = "1,2,4,8,16,32,64,128"

    @Option(help: "Timed runs per token count; the median is kept.")
    var runs: Int = 3

    @Option(help: "OpenBLAS threads (0: OpenBLAS's default, or OPENBLAS_NUM_THREADS).")
    var threads: Int = 0

    @Option(help: "Hardware preset whose GPU and link the written profile keeps.")
    var base: String = "a100-80gb-pcie"

    @Option(help: "Name of the written profile (default: BASE+host).")
    var name: String?

    @Option(help: "Where to write the profile.")
    var out: String = "reports/host.yaml"

    func run() throws {
        let counts = try commaList(tokens, option: "tokens", expected: "a positive whole number") { Int($0).flatMap { $0 > 0 ? $0 : nil } }
        if scale < 1 || runs < 1 || threads < 0 { throw ValidationError("--scale and --runs must be 1 or more, --threads 0 or more") }
        let profile = try RunConfig.profile(named: model, preset: ModelProfile.preset)
        let baseProfile = try RunConfig.profile(named: base, preset: HardwareProfile.preset)
        try FileRoles.check(inputs: [("--model", model), ("--base", base)], outputs: [("--out", out)])
        HostCalibration.setThreads(threads)
        print("timing a \(profile.name) expert at 1/\(scale) size with \(HostCalibration.threads) OpenBLAS thread(s)")
        print("tokens  median_s     GFLOP/s")
        let cal = HostCalibration.measure(model: profile, scale: scale, tokenCounts: counts, runs: runs) { tokens, seconds, gflops in
            print(String(format: "%6d  %.6f  %8.2f", tokens, seconds, gflops))
        }
        let note = "\(profile.name) expert \(cal.hidden)x\(cal.ffn), \(runs) runs per point, median"
        let yaml = cal.profileYAML(base: baseProfile, name: name ?? "\(baseProfile.name)+host", note: note)
        try AtomicFileSink.write(yaml, to: out)
        print(String(format: "fit: host_flops %.4g FLOP/s, host_bytes_per_s %.4g B/s; worst point off the fit by %.1f%%",
                     cal.hostFlops, cal.hostBytesPerSecond,
                     100 * (cal.points.map { abs($0.fittedSeconds - $0.seconds) / $0.seconds }.max() ?? 0)))
        print("wrote \(out)")
    }
}
