import Testing
@testable import MoESim

@Suite struct ConfigTests {
    @Test(arguments: [
        ("16GiB", Budget.bytes(17_179_869_184)), ("40GB", .bytes(40_000_000_000)), ("25%", .share(0.25)),
        ("96experts", .experts(96)), ("1expert", .experts(1)), ("512MiB", .bytes(536_870_912)), ("1000", .bytes(1000)),
        (" 2.5 GB ", .bytes(2_500_000_000)),
    ])
    func budgetsParse(text: String, expected: Budget) throws {
        #expect(try Budget.parse(text) == expected)
    }

    @Test(arguments: ["", "-1GB", "20x", "150%", "1.5experts", "GB"])
    func badBudgetsAreRefused(text: String) {
        #expect(throws: ConfigError.self) { try Budget.parse(text) }
    }

    @Test func budgetsResolveAgainstTheModel() throws {
        let m = try ModelProfile.preset("mixtral-8x7b")
        #expect(m.expertBytes == 352_321_536)
        #expect(Budget.experts(3).bytes(for: m) == 3 * 352_321_536)
        #expect(Budget.share(0.25).bytes(for: m) == 64 * 352_321_536)
    }

    @Test func presetsMatchThePublishedExpertSizes() throws {
        // PROFILES.md, MB per expert (fp16; DeepSeek-V3 in FP8).
        let expected = ["switch-base-128": 9.44, "switch-large-128": 16.78, "mixtral-8x7b": 352.3, "deepseek-v2-lite": 17.3, "qwen1.5-moe-a2.7b": 17.3,
                        "olmoe-1b-7b": 12.6, "qwen3-30b-a3b": 9.44, "deepseek-v3": 44.0]
        for (name, mb) in expected {
            let m = try ModelProfile.preset(name)
            #expect(abs(Double(m.expertBytes) / 1e6 - mb) < 0.06, "\(name): \(Double(m.expertBytes) / 1e6) MB")
            try m.validate()
        }
        for h in HardwareProfile.presets { try h.validate() }
    }

    /// Every hardware preset has its row in docs/profiles.md with the figures the code uses, and a source.
    @Test func everyHardwarePresetIsDocumentedWithItsFigures() throws {
        let docs = try String(contentsOfFile: packageRoot + "/docs/profiles.md", encoding: .utf8).split(separator: "\n")
        for h in HardwareProfile.presets {
            let row = try #require(docs.first { $0.hasPrefix("| \(h.name) |") }, "docs/profiles.md has no row for \(h.name)")
            let hbm = "\(Int(h.hbmBytesPerSecond / 1e9)) GB/s", flops = "\(Int(h.gpuFlops / 1e12)) TFLOP/s"
            let link = "\(Int(h.linkBytesPerSecond / 1e9)) GB/s"
            #expect(row.contains(hbm) && row.contains(flops) && row.contains(link), "\(h.name): \(row) lacks \(hbm), \(flops) or \(link)")
            #expect(!h.source.isEmpty)
        }
    }

    @Test func configLoadsWithInlineOverridesAndRelativePaths() throws {
        let yaml = """
            trace: ../traces/x.jsonl
            model: {preset: mixtral-8x7b, top_k: 3}
            hardware:
              preset: t4
              link_bytes_per_s: 8e9
            budget: 12experts
            cache_scope: per-layer
            policies: [lru, belady]
            """
        let cfg = try RunConfig.parse(yaml, path: "configs/test.yaml")
        #expect(cfg.tracePath == "traces/x.jsonl")
        #expect(cfg.model.topK == 3 && cfg.model.layers == 32)
        #expect(cfg.hardware.linkBytesPerSecond == 8e9 && cfg.hardware.name == "t4")
        #expect(cfg.budget == .experts(12) && cfg.scope == .perLayer && cfg.policies == [.lru, .belady])
    }

    @Test func configErrorsNameTheLineAndSuggestAKey() {
        func message(_ yaml: String) -> String {
            do { _ = try RunConfig.parse(yaml, path: "c.yaml"); return "no error" } catch { return "\(error)" }
        }
        let base = "trace: t.jsonl\nmodel: mixtral-8x7b\nhardware: t4\n"
        #expect(message(base + "budget: 25%\npolicys: [lru]") == "c.yaml:5: unknown key 'policys'. Did you mean 'policies'? Known keys: trace, model, hardware, runtime, budget, cache_scope, policies, prefetch, precision, placement, serving, output")
        #expect(message(base + "budget: lots").hasPrefix("c.yaml:4: invalid budget 'lots'"))
        #expect(message(base + "budget: 25%\npolicies: [lru, beladi]").contains("Did you mean 'belady'?"))
        #expect(message("trace: t.jsonl\nmodel: {preset: mixtral-8x7b, topk: 3}\nhardware: t4\nbudget: 1%").hasPrefix("c.yaml:2: "))
        #expect(message("trace: t.jsonl\nmodel: {preset: mixtral-8x7b, topk: 3}\nhardware: t4\nbudget: 1%").contains("Did you mean 'model.top_k'?"))
        #expect(message("trace: t.jsonl\nmodel: mixtral-8x8b\nhardware: t4\nbudget: 1%").contains("Did you mean 'mixtral-8x7b'?"))
        #expect(message("trace: t.jsonl\nmodel: mixtral-8x7b\nbudget: 1%") == "c.yaml: missing key 'hardware'")
        #expect(message(base + "budget: 1%\nprefetch: {lookahed: 2}").hasPrefix("c.yaml:5: unknown key 'prefetch.lookahed'. Did you mean 'prefetch.lookahead'?"))
        #expect(message(base + "budget: 1%\nprefetch: {accuracy: 1.5}").contains("expected a number in 0 … 1"))
    }

    @Test func impossibleBudgetsAreConfigurationErrors() throws {
        let trace = makeTrace([[[0, 1]], [[2, 3]]], experts: 4, topK: 2, phases: [.prefill, .prefill])
        let model = tinyModel(layers: 1, experts: 4, topK: 2)
        #expect { try replay(trace, model: model, policy: .lru, budget: .bytes(model.expertBytes - 1)) } throws: {
            "\($0)".contains("is too small (it cannot hold one expert)")
        }
        var small = tinyHardware()
        small.gpuMemoryBytes = 5e5
        #expect { try replay(trace, model: model, hardware: small, policy: .lru, budget: .experts(4)) } throws: {
            "\($0)".contains("exceeds what tiny-gpu has for experts")
        }
        #expect { try replay(trace, model: tinyModel(layers: 2), policy: .lru, budget: .experts(4)) } throws: {
            "\($0)".contains("the trace has layers = 1 but model 'tiny-2x4' has 2")
        }
    }
}
