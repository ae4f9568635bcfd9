import FuzzSupport
import MoESim

/// Run configs (`moesim compare --config`), then what a replay does with the spec they make for each strategy:
/// its checks and a short replay, with the config's serving, runtime and placement settings.
func fuzzRunConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    guard let text = Fuzz.text(data, count) else { return 0 }
    Fuzz.expectingMoESimErrors {
        let config = try RunConfig.parse(text, path: "fuzz/run.yaml")
        try config.model.validate()
        try config.hardware.validate()
        _ = config.budget.bytes(for: config.model)
        for policy in config.policies.prefix(3) {
            var spec = ReplaySpec(model: config.model, hardware: config.hardware, policy: policy, scope: config.scope,
                                  budget: config.budget, prefetch: config.prefetch, precision: config.precision,
                                  serving: config.serving, runtime: config.runtime)
            spec.placement = config.placement
            try Fuzz.replaySmall(spec)
        }
    }
    return 0
}

Fuzz.run { data, count in fuzzRunConfig(data, count) }
