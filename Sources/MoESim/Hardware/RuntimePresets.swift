/// Built-in runtime presets: the public figures of docs/profiles.md (sources and derivations there).
extension RuntimeProfile {
    public static let ideal = RuntimeProfile(name: "ideal", source: "the pure roofline: no runtime overhead")

    public static let presets: [RuntimeProfile] = [
        ideal,
        RuntimeProfile(name: "pytorch-eager", layerOverheadSeconds: 1.0e-3, expertOverheadSeconds: 0.28e-3,
                       hbmFraction: 0.7, flopsFraction: 0.7, hostBuffer: .pinned, dequantBytesPerWeight: 4,
                       predictorSeconds: 0.125e-3, demandCopyStream: .compute,
                       source: "PyTorch eager (Hugging Face transformers, mixtral-offloading): ~31 us per op from gpt-fast's eager baseline (25.5 tok/s, Llama-2-7B, A100); op counts of transformers' Mixtral layer; copies on the current stream (mixtral-offloading's expert_cache.py)"),
        RuntimeProfile(name: "cuda-graph", hbmFraction: 0.7, flopsFraction: 0.7, hostBuffer: .pinned,
                       source: "CUDA-graph decode (vLLM-style): launches replayed by the graph; gpt-fast compiled Llama-2-7B reaches 1,397 of 2,039 GB/s; fused low-bit kernels"),
        RuntimeProfile(name: "llama.cpp", layerOverheadSeconds: 0.02e-3, hbmFraction: 0.6, flopsFraction: 0.5,
                       hostBuffer: .pinned,
                       source: "llama.cpp CUDA backend: CUDA graphs for decode, fused dequantising mat-vec kernels, pinned host buffers; ~0.6 of peak bandwidth in its published tg128 results"),
    ]

    /// - Throws: `ConfigError.unknownPreset` naming the presets and the closest one.
    public static func preset(_ name: String) throws -> RuntimeProfile {
        guard let p = presets.first(where: { $0.name == name }) else {
            throw ConfigError.unknownPreset(kind: "runtime", name: name, known: presets.map(\.name))
        }
        return p
    }
}

extension RuntimeProfile {
    public static var presetNames: [String] { presets.map(\.name) }
}
