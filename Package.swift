// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "raidfs",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "raidfs", targets: ["raidfs"]),
        .executable(name: "raidctl", targets: ["raidctl"]),
        .executable(name: "raidfs-codec-bench", targets: ["raidfs-codec-bench"]),
        .executable(name: "raidfs-simulate", targets: ["raidfs-simulate"]),
        .library(name: "RAIDCore", targets: ["RAIDCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3",
                       providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CLinux"),
        .systemLibrary(name: "CISAL", pkgConfig: "libisal",
                       providers: [.apt(["libisal-dev"])]),
        .target(name: "RAIDCore",
                dependencies: ["CISAL", "CLinux", .product(name: "Logging", package: "swift-log")],
                exclude: ["README.md"] + ["Array", "Control", "DataPath", "Layout", "Maintenance", "Members",
                                          "Membership", "Namespace", "Recovery"].map { $0 + "/README.md" },
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .target(name: "RAIDFS",
                dependencies: ["RAIDCore", "CFuse3", .product(name: "Logging", package: "swift-log")],
                exclude: ["README.md"],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "raidfs",
                          dependencies: ["RAIDFS", "RAIDCore",
                                         .product(name: "Logging", package: "swift-log")],
                          swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "raidctl",
                          dependencies: ["RAIDCore",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log")],
                          swiftSettings: [.swiftLanguageMode(.v5)]),
        // The deterministic simulation: simulated members and the harness
        // that drives the engine over them (tests and tools/simulate).
        .target(name: "RAIDSimulation",
                dependencies: ["RAIDCore", .product(name: "Logging", package: "swift-log")],
                swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "raidfs-simulate",
                          dependencies: ["RAIDSimulation", "RAIDCore",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: [.swiftLanguageMode(.v5)]),
        .executableTarget(name: "raidfs-codec-bench", dependencies: ["RAIDCore"],
                          swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "RAIDCoreTests",
                    dependencies: ["RAIDCore", "RAIDSimulation", .product(name: "Logging", package: "swift-log")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "RAIDFSTests", dependencies: ["RAIDCore", "CLinux"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
