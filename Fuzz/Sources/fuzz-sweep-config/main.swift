import FuzzSupport
import MoESim

/// Sweep configs (`moesim sweep`), and the grid of cells they expand to.
func fuzzSweepConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    guard let text = Fuzz.text(data, count) else { return 0 }
    Fuzz.expectingMoESimErrors {
        let config = try SweepConfig.parse(text, path: "fuzz/sweep.yaml")
        for cell in try config.cells() { _ = cell.spec.budget.bytes(for: cell.spec.model) }
    }
    return 0
}

Fuzz.run { data, count in fuzzSweepConfig(data, count) }
