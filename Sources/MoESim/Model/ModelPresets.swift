import Foundation
/// Built-in model presets: the public figures of docs/profiles.md (sources there).
extension ModelProfile {
    public static let presets: [ModelProfile] = [
        ModelProfile(name: "switch-base-128", layers: 12, experts: 128, topK: 1, hidden: 768, expertFFN: 3072,
                     matrices: 2, nonExpertParamsPerLayer: 11_894_784,
                     attention: Attention(heads: 12, kvHeads: 12, headDim: 64),
                     source: "google/switch-base-128 config (12 MoE layers: 6 encoder + 6 decoder)"),
        ModelProfile(name: "switch-large-128", layers: 24, experts: 128, topK: 1, hidden: 1024, expertFFN: 4096,
                     matrices: 2, nonExpertParamsPerLayer: 21_102_592,
                     attention: Attention(heads: 16, kvHeads: 16, headDim: 64),
                     source: "google/switch-large-128 config (24 MoE layers: 12 encoder + 12 decoder)"),
        ModelProfile(name: "mixtral-8x7b", layers: 32, experts: 8, topK: 2, hidden: 4096, expertFFN: 14336,
                     matrices: 3, nonExpertParamsPerLayer: 41_984_000,
                     attention: Attention(heads: 32, kvHeads: 8, headDim: 128),
                     source: "mistralai/Mixtral-8x7B-v0.1 config.json"),
        ModelProfile(name: "deepseek-v2-lite", layers: 26, experts: 64, topK: 6, hidden: 2048, expertFFN: 1408,
                     matrices: 3, sharedExperts: 2, sharedExpertFFN: 1408, nonExpertParamsPerLayer: 13_898_240,
                     attention: Attention(heads: 16, kvHeads: 16, headDim: 192, cacheDim: 576),
                     source: "deepseek-ai/DeepSeek-V2-Lite config.json (26 MoE of 27 layers)"),
        ModelProfile(name: "qwen1.5-moe-a2.7b", layers: 24, experts: 60, topK: 4, hidden: 2048, expertFFN: 1408,
                     matrices: 3, sharedExperts: 1, sharedExpertFFN: 5632, nonExpertParamsPerLayer: 16_912_384,
                     attention: Attention(heads: 16, kvHeads: 16, headDim: 128),
                     source: "Qwen/Qwen1.5-MoE-A2.7B config.json"),
        ModelProfile(name: "olmoe-1b-7b", layers: 16, experts: 64, topK: 8, hidden: 2048, expertFFN: 1024,
                     matrices: 3, nonExpertParamsPerLayer: 16_916_480,
                     attention: Attention(heads: 16, kvHeads: 16, headDim: 128),
                     source: "allenai/OLMoE-1B-7B-0924 config.json"),
        ModelProfile(name: "qwen3-30b-a3b", layers: 48, experts: 128, topK: 8, hidden: 2048, expertFFN: 768,
                     matrices: 3, nonExpertParamsPerLayer: 19_140_864,
                     attention: Attention(heads: 32, kvHeads: 4, headDim: 128),
                     source: "Qwen/Qwen3-30B-A3B config.json"),
        ModelProfile(name: "deepseek-v3", layers: 58, experts: 256, topK: 8, hidden: 7168, expertFFN: 2048,
                     matrices: 3, sharedExperts: 1, sharedExpertFFN: 2048, nonExpertParamsPerLayer: 188_956_928,
                     bytesPerParam: 1, attention: Attention(heads: 128, kvHeads: 128, headDim: 192, cacheDim: 576),
                     source: "deepseek-ai/DeepSeek-V3 config.json (58 MoE of 61 layers, FP8 weights)"),
    ]

    /// - Throws: `ConfigError.unknownPreset` naming the presets and the closest one.
    public static func preset(_ name: String) throws -> ModelProfile {
        guard let p = presets.first(where: { $0.name == name }) else {
            throw ConfigError.unknownPreset(kind: "model", name: name, known: presets.map(\.name))
        }
        return p
    }

    /// The preset a trace was recorded on: the one its header names, else the only one of its shape.
    /// - Throws: `ConfigError.invalidValue` when no preset, or several, fit.
    public static func matching(_ header: TraceHeader) throws -> ModelProfile {
        if let named = presets.first(where: { $0.name == header.model }) { return named }
        let shaped = presets.filter { $0.layers == header.layers && $0.experts == header.experts && $0.topK == header.topK }
        guard shaped.count == 1 else {
            throw ConfigError.invalidValue(field: "--model", value: "(not given)",
                expected: "a preset for this trace (\(header.layers) layers, \(header.experts) experts, top-\(header.topK)): "
                    + (shaped.isEmpty ? "no preset has this shape; pass --model with --set model.FIELD=…" : "several fit: \(shaped.map(\.name).joined(separator: ", "))"))
        }
        return shaped[0]
    }
}

extension ModelProfile {
    public static var presetNames: [String] { presets.map(\.name) }

    /// The profile file beside a trace (`T.model.yaml` for `T.jsonl.gz`, `T.jsonl` or `T.moet`): what
    /// `moesim-trace record` writes for a model moesim has no preset for.
    public static func besideTrace(_ tracePath: String) -> String {
        let folder = (tracePath as NSString).deletingLastPathComponent
        return (folder as NSString).appendingPathComponent(RoutingTrace.traceName(tracePath) + ".model.yaml")
    }

    /// The model of a trace given no `--model`: the preset its header names or has the shape of, else the profile
    /// beside it (`besideTrace`), with where it came from.
    /// - Throws: `matching`'s error, naming the file it looked for too, when neither is there.
    public static func forTrace(_ tracePath: String, header: TraceHeader) throws -> (profile: ModelProfile, origin: String) {
        do {
            return (try matching(header), "preset")
        } catch let ConfigError.invalidValue(field, value, expected) {
            let beside = besideTrace(tracePath)
            guard FileManager.default.fileExists(atPath: beside) else {
                throw ConfigError.invalidValue(field: field, value: value, expected: expected + ", or a model profile beside the trace (\(beside), as moesim-trace record writes)")
            }
            return (try RunConfig.profileFile(beside, preset: ModelProfile.preset), beside)
        }
    }
}
