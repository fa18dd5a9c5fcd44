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
        // The daemon's /dev/fuse reads and writes (libfuse's custom I/O):
        // what libfuse 3.14 cannot negotiate or hand on (fuse_io.h).
        .target(name: "CFuseIO"),
        .systemLibrary(name: "CISAL", pkgConfig: "libisal",
                       providers: [.apt(["libisal-dev"])]),
        // The bottom of every raidfs module: FSError, the EINTR-retrying
        // syscall helper, the locks, aligned buffers and the seeded random
        // source.
        .target(name: "RAIDBase", exclude: ["README.md"], swiftSettings: [.swiftLanguageMode(.v6)]),
        // What raidctl and the daemon share: the control protocol and the
        // status and event types it carries.
        .target(name: "RAIDControl", dependencies: ["RAIDBase"], exclude: ["README.md"],
                swiftSettings: [.swiftLanguageMode(.v6)]),
        // Where every byte lives: levels, stripe geometry, member-file
        // layout, file header, and the ISA-L codec and CRC32C. Pure.
        .target(name: "RAIDLayout", dependencies: ["RAIDBase", "CISAL"], exclude: ["README.md"],
                swiftSettings: [.swiftLanguageMode(.v6)]),
        // The Member seam, the directory member and the fault-injecting
        // wrapper: storage, with no knowledge of arrays.
        .target(name: "RAIDMembers", dependencies: ["RAIDBase", "RAIDLayout", "RAIDControl", "CLinux"],
                exclude: ["README.md"], swiftSettings: [.swiftLanguageMode(.v6)]),
        // The engine: membership, the data path, the namespace, recovery and
        // maintenance, over the layers below.
        .target(name: "RAIDCore",
                dependencies: ["RAIDBase", "RAIDLayout", "RAIDMembers", "RAIDControl", "CLinux",
                               .product(name: "Logging", package: "swift-log")],
                exclude: ["README.md"] + ["Array", "DataPath", "Environment", "Maintenance",
                                          "Membership", "Namespace", "Recovery"].map { $0 + "/README.md" },
                swiftSettings: [.swiftLanguageMode(.v6)]),
        .target(name: "RAIDFS",
                dependencies: ["RAIDCore", "CFuse3", "CFuseIO", .product(name: "Logging", package: "swift-log")],
                exclude: ["README.md"],
                swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(name: "raidfs",
                          dependencies: ["RAIDFS", "RAIDCore", "RAIDControl", "CLinux",
                                         .product(name: "Logging", package: "swift-log")],
                          swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(name: "raidctl",
                          dependencies: ["RAIDCore", "RAIDControl",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log")],
                          swiftSettings: [.swiftLanguageMode(.v6)]),
        // The deterministic simulation: simulated members and the harness
        // that drives the engine over them (tests and tools/simulate).
        .target(name: "RAIDSimulation",
                dependencies: ["RAIDCore", .product(name: "Logging", package: "swift-log")],
                swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(name: "raidfs-simulate",
                          dependencies: ["RAIDSimulation", "RAIDCore", "CLinux",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: [.swiftLanguageMode(.v6)]),
        .executableTarget(name: "raidfs-codec-bench", dependencies: ["RAIDCore"],
                          swiftSettings: [.swiftLanguageMode(.v6)]),
        // The tests stay in Swift 5 mode: their threads share counters and
        // buffers under locks of their own, which Swift 6 cannot check.
        // The engine: layout, codec, assembly, the data path, recovery and
        // the deterministic simulation, over simulated and directory members.
        .testTarget(name: "RAIDCoreTests",
                    dependencies: ["RAIDCore", "RAIDControl", "RAIDSimulation", .product(name: "Logging", package: "swift-log")],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        // The FUSE adapter's own parts (the inode table), without a mount.
        .testTarget(name: "RAIDFSTests", dependencies: ["RAIDFS"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
        // The daemon and raidctl through real FUSE mounts of real directories.
        .testTarget(name: "DaemonTests", dependencies: ["RAIDCore", "RAIDControl", "CLinux"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
