import Foundation
import Testing
@testable import MoESim

/// Every input that crashed moesim, or was accepted with a wrong result, in the hardening review (issue 16): each
/// must now end in a clear error that names what is wrong. Before the fixes each of these trapped, allocated
/// absurdly or returned a wrong number.
@Suite struct HardeningTests {
    /// The error `body` throws, as text ("no error" when it throws none).
    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    func expectMessage(_ body: () throws -> Void, _ fragments: String..., sourceLocation: SourceLocation = #_sourceLocation) {
        let text = message(body)
        for f in fragments { #expect(text.contains(f), "'\(text)' lacks '\(f)'", sourceLocation: sourceLocation) }
    }

    // MARK: Trace headers and lines

    @Test(arguments: [
        (#""layers":9223372036854775807,"experts":8,"top_k":2"#, "'layers'"),
        (#""layers":9223372036854775807,"experts":8,"top_k":1"#, "'layers'"),
        (#""layers":4611686018427387904,"experts":8,"top_k":2"#, "'layers'"),
        (#""layers":1e8,"experts":8,"top_k":2"#, "'layers'"),
        (#""layers":32,"experts":65535,"top_k":2"#, "'experts'"),
        (#""layers":1024,"experts":65534,"top_k":2"#, "layers × experts"),
        (#""layers":1024,"experts":1024,"top_k":1024"#, "layers × top_k"),
        (#""layers":1,"experts":1,"top_k":2000"#, "'top_k'"),
    ])
    func absurdHeaderShapesAreRefused(shape: String, field: String) {
        let path = writeTemporary("{\"format\":\"moe-routing-trace\",\"version\":1,\"model\":\"x\",\(shape)}\n")
        expectMessage({ _ = try RoutingTrace.load(path) }, "\(path):1:", field)
    }

    @Test func sequenceNumbersAndPositionsMustFit32Bits() {
        let header = #"{"format":"moe-routing-trace","version":1,"model":"t","layers":1,"experts":4,"top_k":1}"#
        for (line, field) in [(#"{"seq":2147483648,"pos":0,"phase":"decode","experts":[[0]]}"#, "'seq'"),
                              (#"{"seq":0,"pos":2147483648,"phase":"decode","experts":[[0]]}"#, "'pos'")] {
            let path = writeTemporary(header + "\n" + line + "\n")
            expectMessage({ _ = try RoutingTrace.load(path) }, "\(path):2:", field, "outside 0 … 2147483647")
        }
        // The largest value is still accepted and kept exactly (it was clamped before, merging sequences).
        let path = writeTemporary(header + "\n" + #"{"seq":2147483647,"pos":2147483647,"phase":"decode","experts":[[0]]}"# + "\n")
        let trace = try? RoutingTrace.load(path)
        #expect(trace?.seq == [Int32.max] && trace?.pos == [Int32.max])
    }

    @Test func aWeightThatOverflowsFloatIsRefused() {
        let header = #"{"format":"moe-routing-trace","version":1,"model":"t","layers":1,"experts":4,"top_k":1}"#
        for w in ["1e39", "1e300", "1e7"] {
            let path = writeTemporary(header + "\n" + #"{"seq":0,"pos":0,"phase":"decode","experts":[[0]],"weights":[["# + w + "]]}\n")
            expectMessage({ _ = try RoutingTrace.load(path) }, "\(path):2:", "'weights'", "outside 0 … 1e+06")
        }
    }

    // MARK: Binary traces

    /// A valid `.moet` file of 3 tokens × 2 layers × top-2 with weights, and its column offsets.
    func binarySample() throws -> (bytes: [UInt8], seq: Int, pos: Int, ids: Int, weights: Int) {
        var trace = RoutingTrace(header: TraceHeader(model: "t", layers: 2, experts: 4, topK: 2), name: "t")
        var r = TokenRecord(layers: 2, topK: 2)
        r.hasWeights = true
        for t in 0..<3 {
            r.pos = t
            r.experts = [0, 1, 2, 3]
            r.weights = [0.6, 0.4, 0.5, 0.5]
            trace.append(r)
        }
        let path = temporaryDirectory() + "/s.moet"
        try trace.write(to: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let json = Int(bytes[36]) | Int(bytes[37]) << 8
        let seq = 40 + json, pos = seq + 12, ids = pos + 12 + 3
        return (bytes, seq, pos, ids, ids + 3 * 4 * 2)
    }

    func loadBinary(_ bytes: [UInt8]) throws { _ = try RoutingTrace.load(bytes: bytes, path: "b.moet") }

    @Test func binaryHeadersCannotAskForAbsurdMemory() throws {
        let sample = try binarySample()
        for tokens: UInt64 in [1 << 36, UInt64.max, 4] {
            var b = sample.bytes
            withUnsafeBytes(of: tokens.littleEndian) { for i in 0..<8 { b[28 + i] = $0[i] } }
            expectMessage({ try loadBinary(b) }, "b.moet:1:", tokens > UInt64(Int32.max) ? "tokens" : "header describes")
        }
        var layers = sample.bytes
        layers[12] = 0; layers[13] = 0; layers[14] = 1  // 65536 layers
        expectMessage({ try loadBinary(layers) }, "'layers'", "outside 1 … 1024")
    }

    @Test func binaryContentIsCheckedLikeJSON() throws {
        let s = try binarySample()
        func patched(_ offset: Int, _ value: some FixedWidthInteger) -> [UInt8] {
            var b = s.bytes
            withUnsafeBytes(of: value.littleEndian) { for i in 0..<$0.count { b[offset + i] = $0[i] } }
            return b
        }
        func weight(_ w: Float) -> [UInt8] { patched(s.weights + 4, w.bitPattern) }
        expectMessage({ try loadBinary(weight(.nan)) }, "b.moet:2:", "'weights'", "weight nan is outside")
        var nullCell = s.bytes  // token 1, layer 1: ids null, weights still 0.5
        for i in 0..<4 { nullCell[s.ids + 12 + i] = 0xFF }
        expectMessage({ try loadBinary(nullCell) }, "b.moet:3:", "'weights'", "layer 1: weights must be NaN exactly where experts are null")
        expectMessage({ try loadBinary(weight(.infinity)) }, "b.moet:2:", "'weights'", "outside")
        expectMessage({ try loadBinary(weight(-.infinity)) }, "'weights'", "outside")
        expectMessage({ try loadBinary(weight(-0.5)) }, "'weights'", "outside")
        expectMessage({ try loadBinary(patched(s.seq + 4, Int32(-1))) }, "b.moet:3:", "'seq'", "negative")
        expectMessage({ try loadBinary(patched(s.pos + 8, Int32(-7))) }, "b.moet:4:", "'pos'", "negative")
        // A NaN weight once reached the JSON writer and trapped there (`trace convert X.moet Y.jsonl`).
        let moet = temporaryDirectory() + "/nan.moet"
        try Data(weight(.nan)).write(to: URL(fileURLWithPath: moet))  // a NaN where an id is
        let out = try CLITests().moesim("trace", "convert", moet, temporaryDirectory() + "/y.jsonl")
        #expect(out.status != 0 && out.stderr.contains("'weights'"))
    }

    // MARK: Budgets and numbers

    @Test(arguments: ["1e30", "1e30experts", "1e11experts", "0x10GiB", "0x10", "nan", "inf", "1_000GB", "1e300%"])
    func budgetsThatOverflowOrAreNotDecimalAreRefused(text: String) {
        #expect(throws: ConfigError.self) { try Budget.parse(text) }
    }

    @Test func decimalTextAcceptsWhatUsersWrite() {
        #expect(DecimalText.double("25e9") == 25e9 && DecimalText.double(" .5 ") == 0.5 && DecimalText.double("-3.") == -3)
        for bad in ["0x10", "nan", "inf", "1e", "e5", "+", "", "1_0", "1e400", "0x1p3"] { #expect(DecimalText.double(bad) == nil, "\(bad)") }
        #expect(DecimalText.integer("1e9") == 1_000_000_000 && DecimalText.integer("64") == 64)
        #expect(DecimalText.integer("1.5") == nil && DecimalText.integer("1e300") == nil)
    }

    /// Every field that overflowed time, bytes or memory, refused in each place a user can write it.
    static let badFields = [
        "hardware.gpu_memory_bytes=1e19", "hardware.link_bytes_per_s=1e-300", "hardware.gpu_flops=1e-300",
        "hardware.hbm_bytes_per_s=1e-300", "hardware.link_latency_s=1e300", "hardware.kernel_launch_s=1e10",
        "hardware.copy_engines=1e9", "model.hidden=4611686018427387904", "model.expert_ffn=1e15",
        "model.bytes_per_param=1e300", "model.bytes_per_param=1e-300", "model.shared_expert_ffn=-5",
        "hardware.link_bytes_per_s=0x10", "model.layers=nan",
    ]

    @Test(arguments: badFields)
    func outOfRangeFieldsAreRefusedWhereverTheyAreWritten(assignment: String) throws {
        let parts = assignment.split(separator: "=").map(String.init)
        let key = parts[0], value = parts[1]
        let section = String(key.split(separator: ".")[0]), field = String(key.split(separator: ".")[1])
        // `--set` (the CLI applies the same `set`).
        var model = try ModelProfile.preset("mixtral-8x7b"), hardware = try HardwareProfile.preset("a100-80gb-pcie")
        expectMessage({ section == "model" ? try model.set(field, to: value, origin: "--set")
                                           : try hardware.set(field, to: value, origin: "--set") },
                      "invalid value '\(value)' for \(key)")
        // A profile file.
        let preset = section == "model" ? "mixtral-8x7b" : "a100-80gb-pcie"
        let file = writeTemporary("preset: \(preset)\n\(field): \(value)\n", name: "p.yaml")
        expectMessage({
            if section == "model" { _ = try RunConfig.profileFile(file, preset: ModelProfile.preset) }
            else { _ = try RunConfig.profileFile(file, preset: HardwareProfile.preset) }
        },
                      "\(file):2:", key)
        // A run config's inline section.
        let run = "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: a100-80gb-pcie\nbudget: 25%\n"
            .replacingOccurrences(of: "\(section): \(preset)", with: "\(section): {preset: \(preset), \(field): \(value)}")
        expectMessage({ _ = try RunConfig.parse(run, path: "c.yaml") }, "c.yaml:\(section == "model" ? 2 : 3):", key)
        // A sweep axis, with the line of the value.
        let sweep = "traces: [t.jsonl]\nmodels: [mixtral-8x7b]\nhardware: [a100-80gb-pcie]\npolicies: [lru]\naxes:\n  budget: [25%]\n  \(key): [\(value)]\n"
        expectMessage({ _ = try SweepConfig.parse(sweep, path: "s.yaml") }, "s.yaml:7:", key)
    }

    @Test func strategyOptionsThatOverflowAreRefused() {
        for (section, key, value) in [("precision", "group_size", "1e300"), ("precision", "low_bits", "1e20"),
                                      ("prefetch", "lookahead", "1e300"), ("precision", "threshold", "nan")] {
            let yaml = "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: t4\nbudget: 25%\n\(section): {\(key): \(value)}\n"
            expectMessage({ _ = try RunConfig.parse(yaml, path: "c.yaml") }, "c.yaml:5:", "\(section).\(key)")
        }
    }

    @Test func aRunThatCouldOutlastTheClockIsRefused() throws {
        let trace = try RoutingTrace.load(packageRoot + "/traces/mixtral-synth.jsonl.gz")
        var slow = try HardwareProfile.preset("a100-80gb-pcie")
        slow.linkBytesPerSecond = 1e3  // in range, but 350 MB experts then take 4 days a copy
        let spec = ReplaySpec(model: try ModelProfile.preset("mixtral-8x7b"), hardware: slow, policy: .lru, budget: .share(0.25))
        expectMessage({ _ = try Replayer.run(plan: StepPlan(trace), traceName: "m", spec: spec) },
                      "simulated time stays below")
        // The bound is an upper bound: at a realistic rate the same run goes ahead.
        slow.linkBytesPerSecond = 1e9
        _ = try Replayer.run(plan: StepPlan(trace), traceName: "m", spec: ReplaySpec(model: spec.model, hardware: slow, policy: .lru, budget: .share(0.25)))
    }

    @Test func aNegativeSharedExpertCannotShrinkResidentBytes() {
        expectMessage({ var m = try ModelProfile.preset("mixtral-8x7b"); try m.set("shared_expert_ffn", to: "-14336", origin: "--set") },
                      "model.shared_expert_ffn", "0 … 2^20")
        var m = try! ModelProfile.preset("mixtral-8x7b")
        m.sharedExperts = 1
        m.sharedExpertFFN = -14336  // built in code, not parsed: validate() catches it
        expectMessage({ try m.validate() }, "model.shared_expert_ffn")
    }

    // MARK: YAML

    @Test func deeplyNestedYAMLIsRefusedBeforeParsing() {
        let flow = "trace: " + String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000) + "\n"
        expectMessage({ _ = try RunConfig.parse(flow, path: "c.yaml") }, "c.yaml:1:", "nested deeper than 64")
        var block = ""
        for depth in 0..<1000 { block += String(repeating: " ", count: depth) + "- \n" }
        expectMessage({ _ = try SweepConfig.parse(block, path: "s.yaml") }, "nested deeper than 64")
        let compact = String(repeating: "- ", count: 10_000) + "x\n"
        expectMessage({ _ = try SweepConfig.parse(compact, path: "s.yaml") }, "nested deeper than 64")
        // Quotes and comments do not hide brackets from the count, and do not add to it.
        #expect(YAMLNesting.deepest(in: "a: \"[[[[\" # [[[[\nb: [1, [2]]\n").depth < 10)
        #expect(YAMLNesting.deepest(in: "a: '" + String(repeating: "]", count: 100) + "'\nb: " + String(repeating: "[", count: 70)).depth > 64)
    }

    @Test func billionLaughsIsRefused() {
        var yaml = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        for (i, name) in ["b", "c", "d", "e", "f", "g"].enumerated() {
            let prev = i == 0 ? "a" : ["b", "c", "d", "e", "f", "g"][i - 1]
            yaml += "\(name): &\(name) [" + Array(repeating: "*\(prev)", count: 10).joined(separator: ", ") + "]\n"
        }
        expectMessage({ _ = try SweepConfig.parse(yaml, path: "s.yaml") }, "more than 100000 YAML nodes")
    }

    @Test func duplicateKeysAreRefused() {
        let run = "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: t4\nbudget: 25%\nbudget: 50%\n"
        expectMessage({ _ = try RunConfig.parse(run, path: "c.yaml") }, "c.yaml:5:", "duplicate key 'budget' (first at line 4)")
        let sweep = "traces: [t.jsonl]\nmodels: [mixtral-8x7b]\nhardware: [t4]\npolicies: [lru]\naxes:\n  budget: [25%]\n  budget: [50%]\n"
        expectMessage({ _ = try SweepConfig.parse(sweep, path: "s.yaml") }, "s.yaml:7:", "duplicate key 'budget'")
        let nested = "trace: t.jsonl\nmodel: {preset: mixtral-8x7b, top_k: 2, top_k: 3}\nhardware: t4\nbudget: 25%\n"
        expectMessage({ _ = try RunConfig.parse(nested, path: "c.yaml") }, "c.yaml:2:", "duplicate key 'top_k'")
    }

    @Test func emptyGridsAreRefused() {
        let base = ["traces: [t.jsonl]", "models: [mixtral-8x7b]", "hardware: [t4]", "policies: [lru]", "axes:\n  budget: [25%]"]
        for (i, key) in ["traces", "models", "hardware", "policies"].enumerated() {
            var lines = base
            lines[i] = "\(key): []"
            expectMessage({ _ = try SweepConfig.parse(lines.joined(separator: "\n"), path: "s.yaml") }, "s.yaml:\(i + 1):", "'\(key)' is empty")
        }
        expectMessage({ _ = try SweepConfig.parse(base.dropLast().joined(separator: "\n") + "\naxes:\n  budget: []", path: "s.yaml") },
                      "axis budget has no values")
    }

    @Test func crossFieldAxisErrorsNameTheCell() throws {
        let yaml = "traces: [t.jsonl]\nmodels: [mixtral-8x7b]\nhardware: [t4]\npolicies: [lru]\naxes:\n  budget: [25%]\n  model.top_k: [2, 9]\n"
        let cfg = try SweepConfig.parse(yaml, path: "s.yaml")
        expectMessage({ _ = try cfg.cells() }, "the sweep cell with model mixtral-8x7b, hardware t4, budget 25%, model.top_k 9", "at most experts (8)")
    }

    // MARK: Limits stated once

    @Test func theDocsListEveryFieldsRangeAsTheCodeDefinesIt() throws {
        let config = try String(contentsOfFile: packageRoot + "/docs/config.md", encoding: .utf8)
        for (section, fields) in [(ModelProfile.section, ModelProfile.fields.map { ($0.key, $0.range) }),
                                  (HardwareProfile.section, HardwareProfile.fields.map { ($0.key, $0.range) }),
                                  (RuntimeProfile.section, RuntimeProfile.fields.map { ($0.key, $0.range) })] {
            for (key, range) in fields where !range.isEmpty {
                #expect(config.contains("| `\(section).\(key)` | \(range) |"), "docs/config.md lacks \(section).\(key): \(range)")
            }
        }
        for (key, range) in [("prefetch.lookahead", Limits.describe(Limits.lookahead)), ("prefetch.accuracy", Limits.describe(Limits.accuracy)),
                             ("precision.threshold", Limits.describe(Limits.precisionThreshold)),
                             ("precision.group_size", Limits.describe(Limits.groupSize))] {
            #expect(config.contains("| `\(key)` | \(range) |"), "docs/config.md lacks \(key): \(range)")
        }
        let format = try String(contentsOfFile: packageRoot + "/docs/trace-format.md", encoding: .utf8)
        for row in ["| `layers` | \(Limits.describe(Limits.layers)) |", "| `experts` | \(Limits.describe(Limits.experts)) |",
                    "| `seq`, `pos` | \(Limits.describe(Limits.seq)) (2^31 − 1) |", "| gate weight | \(Limits.describe(Limits.gateWeight)) |"] {
            #expect(format.contains(row), "docs/trace-format.md lacks \(row)")
        }
    }
}
