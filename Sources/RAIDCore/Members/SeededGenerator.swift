/// The engine's seeded random source (xorshift64): fault injection's
/// rates, file ids and UUIDs in the simulation, so that a seed replays.
public struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed | 1 }
    public mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}
