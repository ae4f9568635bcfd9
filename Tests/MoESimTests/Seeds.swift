import Foundation

/// The seeds a property test runs over: `first ..< first + full` in a full run (CI, `make test`); with
/// `MOESIM_TEST_SEEDS=fast` (`make test-fast`) only the first two, so that every property still runs, over fewer
/// cases.
func propertySeeds(_ full: Int, from first: UInt64 = 1) -> [UInt64] {
    let count = ProcessInfo.processInfo.environment["MOESIM_TEST_SEEDS"] == "fast" ? min(full, 2) : full
    return (0..<count).map { first + UInt64($0) }
}
