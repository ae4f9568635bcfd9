import FuzzSupport
import MoESim

/// Profile files (`--model FILE`, `--hardware FILE`, `--runtime FILE`, as `moesim calibrate` writes them), read
/// as each kind.
func fuzzProfile(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    guard let text = Fuzz.text(data, count) else { return 0 }
    Fuzz.expectingMoESimErrors {
        let model = try RunConfig.profileFile(text: text, path: "fuzz/model.yaml", preset: ModelProfile.preset)
        try model.validate()
        _ = model.totalExpertBytes
    }
    Fuzz.expectingMoESimErrors {
        let hardware = try RunConfig.profileFile(text: text, path: "fuzz/hardware.yaml", preset: HardwareProfile.preset)
        try hardware.validate()
    }
    Fuzz.expectingMoESimErrors {
        let runtime = try RunConfig.profileFile(text: text, path: "fuzz/runtime.yaml", preset: RuntimeProfile.preset)
        try runtime.validate()
    }
    return 0
}

Fuzz.run { data, count in fuzzProfile(data, count) }
