// The engine's users (the FUSE adapter, the daemon, raidctl, the
// simulation and the tests) see the layers under it through it, as
// swift-nio's NIO module re-exports NIOCore and NIOPosix.
@_exported import RAIDBase
@_exported import RAIDLayout
@_exported import RAIDMembers
