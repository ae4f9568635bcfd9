// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "moesim",
    products: [
        .library(name: "MoESim", targets: ["MoESim"]),
        .executable(name: "moesim", targets: ["MoESimCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(name: "CMalloc"),
        .target(
            name: "MoESim",
            dependencies: [
                "COpenBLAS", "CZlib", "CMalloc",
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        .executableTarget(
            name: "MoESimCLI",
            dependencies: [
                "MoESim",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "MoESimTests",
            dependencies: ["MoESim"]
        ),
    ]
)
