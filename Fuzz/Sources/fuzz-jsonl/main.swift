import FuzzSupport
import MoESim

/// JSON Lines traces, plain or gzip (by the input's first bytes), read as `moesim replay` reads a file.
func fuzzJSONL(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, count)
    let gzip = bytes.starts(with: [0x1F, 0x8B])
    Fuzz.expectingMoESimErrors {
        Fuzz.checkTrace(try RoutingTrace.load(bytes: bytes, path: gzip ? "fuzz.jsonl.gz" : "fuzz.jsonl"))
    }
    return 0
}

Fuzz.run { data, count in fuzzJSONL(data, count) }
