import FuzzSupport
import MoESim

/// Sweep configs (`moesim sweep`), the grid of cells they expand to, and what a replay does with the first cells'
/// specs (axes over serving, runtime and placement settings included).
func fuzzSweepConfig(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    guard let text = Fuzz.text(data, count) else { return 0 }
    Fuzz.expectingMoESimErrors {
        let config = try SweepConfig.parse(text, path: "fuzz/sweep.yaml")
        let cells = try config.cells()
        for cell in cells { _ = cell.spec.budget.bytes(for: cell.spec.model) }
        for cell in cells.prefix(3) { try Fuzz.replaySmall(cell.spec) }
    }
    return 0
}

Fuzz.run { data, count in fuzzSweepConfig(data, count) }
