import FuzzSupport
import MoESim

/// Binary `.moet` traces.
func fuzzMoet(_ data: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, count)
    Fuzz.expectingMoESimErrors { Fuzz.checkTrace(try RoutingTrace.load(bytes: bytes, path: "fuzz.moet")) }
    return 0
}

Fuzz.run { data, count in fuzzMoet(data, count) }
