// swift-tools-version:6.0
// libFuzzer targets for every input path of moesim (docs/robustness.md). Built by `make fuzz` with
// `-sanitize=fuzzer,address`; not part of the main package, so `swift build` and `make test` never need them.
import PackageDescription

let fuzzTargets = ["fuzz-jsonl", "fuzz-moet", "fuzz-run-config", "fuzz-sweep-config", "fuzz-profile"]

let package = Package(
    name: "moesim-fuzz",
    dependencies: [.package(name: "moesim", path: "..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "MoESim", package: "moesim")]),
    ] + fuzzTargets.map { name in
        .executableTarget(name: name, dependencies: ["FuzzSupport", .product(name: "MoESim", package: "moesim")])
    }
)
