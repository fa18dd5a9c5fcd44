/// The engine's seeded random source (xorshift64): fault injection's
/// rates, file ids and UUIDs in the simulation, so that a seed replays.
public struct SeededGenerator: RandomNumberGenerator {
    package var state: UInt64
    public init(seed: UInt64) { state = seed | 1 }

    /// A generator whose stream is not the one `seed` was drawn from: a
    /// xorshift seeded with a value of a xorshift stream is that stream
    /// again (as far along as the value), so two generators seeded from
    /// one stream would repeat each other's numbers. SplitMix64's
    /// finaliser scrambles the seed first.
    public static func independent(of seed: UInt64) -> SeededGenerator {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return SeededGenerator(seed: z ^ (z >> 31))
    }
    public mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}
