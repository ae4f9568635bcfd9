import Foundation
import Testing
@testable import MoESim

/// Every reader, fed mutated copies of the bundled files, either returns a value that keeps its invariants or
/// throws moesim's own error naming the file; it never traps (a trap would end this test process). The fuzz
/// targets (Fuzz/, docs/robustness.md) explore the same paths guided by coverage; this is their seeded,
/// always-run counterpart.
@Suite struct ReaderPropertyTests {
    static let seeds: [UInt64] = propertySeeds(12)
    static let mutationsPerSeed = 250

    /// Interesting text a mutation may splice in: numbers at the limits, structure, other formats' magic.
    static let tokens = ["2147483648", "9223372036854775807", "-1", "1e39", "1e300", "nan", "0x10", "null", "[[", "]]",
                         "{", "}", ",", "\"", ":", "- ", "&a ", "*a", "\n", "\u{FF}", "MOETRACE", "65535", "0", "1e8"]

    /// One random edit: flip a byte, drop a span, duplicate a span, splice a token, or cut the end.
    static func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var b = input
        let edits = 1 + rng.nextInt(below: 3)
        for _ in 0..<edits where !b.isEmpty {
            let at = rng.nextInt(below: b.count)
            switch rng.nextInt(below: 5) {
            case 0: b[at] ^= UInt8(1 << rng.nextInt(below: 8))
            case 1: b.removeSubrange(at..<min(b.count, at + 1 + rng.nextInt(below: 16)))
            case 2: b.insert(contentsOf: b[at..<min(b.count, at + 1 + rng.nextInt(below: 32))], at: at)
            case 3: b.insert(contentsOf: Array(tokens[rng.nextInt(below: tokens.count)].utf8), at: at)
            default: b.removeSubrange(at...)
            }
        }
        return b
    }

    func bytes(_ relativePath: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: packageRoot + "/" + relativePath)))
    }

    /// Runs `read` on mutations of `seed`; moesim's errors must name `path`, and nothing else may be thrown.
    func check(seed input: [UInt8], path: String, _ read: ([UInt8]) throws -> Void) {
        var accepted = 0, refused = 0
        for seed in Self.seeds {
            var rng = SplitMix64(seed: seed)
            for _ in 0..<Self.mutationsPerSeed {
                let mutated = Self.mutate(input, &rng)
                do {
                    try read(mutated)
                    accepted += 1
                } catch let e as TraceError {
                    refused += 1
                    #expect("\(e)".hasPrefix(path), "a trace error names the file: \(e)")
                } catch let e as ConfigError {
                    refused += 1
                    #expect("\(e)".contains(path) || "\(e)".contains("invalid") || "\(e)".contains("sweep cell"), "\(e)")
                } catch {
                    Issue.record("not one of moesim's errors: \(error)")
                }
            }
        }
        #expect(refused > 0 && accepted + refused == Self.seeds.count * Self.mutationsPerSeed)
    }

    /// What every loaded trace keeps.
    func expectValid(_ t: RoutingTrace) {
        let h = t.header
        #expect(t.experts.count == t.tokenCount * h.layers * h.topK)
        #expect(t.experts.allSatisfy { $0 == TokenRecord.missing || Int($0) < h.experts })
        #expect(t.weights.isEmpty || zip(t.experts, t.weights).allSatisfy { id, w in
            id == TokenRecord.missing ? w.isNaN : Limits.gateWeight.contains(Double(w)) })
        #expect(t.seq.allSatisfy { $0 >= 0 } && t.pos.allSatisfy { $0 >= 0 })
        _ = StepPlan(t)
    }

    @Test func jsonLinesReaderNeverTraps() throws {
        let lines = try bytes("traces/golden-tiny.jsonl")
        check(seed: lines, path: "m.jsonl") { expectValid(try RoutingTrace.load(bytes: $0, path: "m.jsonl")) }
    }

    @Test func gzipReaderNeverTraps() throws {
        let gz = Array(try bytes("traces/switch-synth.jsonl.gz").prefix(4096))  // a cut stream: mutations explore inflate errors
        check(seed: gz, path: "m.jsonl.gz") { expectValid(try RoutingTrace.load(bytes: $0, path: "m.jsonl.gz")) }
    }

    @Test func binaryReaderNeverTraps() throws {
        let path = temporaryDirectory() + "/g.moet"
        try RoutingTrace.load(packageRoot + "/traces/golden-tiny.jsonl").write(to: path)
        let moet = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        check(seed: moet, path: "m.moet") { expectValid(try RoutingTrace.load(bytes: $0, path: "m.moet")) }
    }

    @Test func configReadersNeverTrap() throws {
        func text(_ b: [UInt8]) throws -> String {
            guard let s = String(validating: b, as: UTF8.self) else { throw ConfigError.file(path: "c.yaml", line: nil, message: "not UTF-8") }
            return s
        }
        check(seed: try bytes("configs/default.yaml"), path: "c.yaml") { b in
            let c = try RunConfig.parse(try text(b), path: "c.yaml")
            try c.model.validate()
            try c.hardware.validate()
        }
        check(seed: try bytes("configs/sweep-mixtral-consumer.yaml"), path: "c.yaml") { b in
            _ = try SweepConfig.parse(try text(b), path: "c.yaml").cells()
        }
        check(seed: Array("preset: a100-80gb-pcie\nhost_flops: 1.34e11\ncopy_engines: 2\n".utf8), path: "c.yaml") { b in
            try RunConfig.profileFile(text: try text(b), path: "c.yaml", preset: HardwareProfile.preset).validate()
        }
    }
}
