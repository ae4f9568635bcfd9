import FuzzSupport
import MoESim

/// Run configs (`moesim compare --config`), then what a replay checks of the spec they make.
func fuzzRunConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    guard let text = Fuzz.text(data, count) else { return 0 }
    Fuzz.expectingMoESimErrors {
        let config = try RunConfig.parse(text, path: "fuzz/run.yaml")
        try config.model.validate()
        try config.hardware.validate()
        _ = config.budget.bytes(for: config.model)
    }
    return 0
}

Fuzz.run { data, count in fuzzRunConfig(data, count) }
