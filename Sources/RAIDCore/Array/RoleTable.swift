/// Every role's state, and the flags the data path reads for it: the one
/// place that writes them. A role is active (read and written), rebuilding
/// (written, not read), or neither (faulty, missing); a replacement taking
/// it over is its shadow (written, never read). A role's generation moves
/// on whenever a different member takes it, so a file handle opened on the
/// old member is never used for the new one.
///
/// Written only under the array's `stateLock`, which every caller holds.
/// The data path reads the flags and generations on every chunk I/O without
/// a lock (single bytes and words, written in place); the states only under
/// the lock.
final class RoleTable {
    private(set) var states: [RoleState]
    /// Per role: 0 not served, 1 active, 2 rebuilding.
    let active: UnsafeMutablePointer<UInt8>
    let generations: UnsafeMutablePointer<UInt32>
    /// Per role: 1 while a replacement (shadow) takes its writes.
    let shadow: UnsafeMutablePointer<UInt8>
    let shadowGenerations: UnsafeMutablePointer<UInt32>
    let count: Int

    static let notServed: UInt8 = 0, activeFlag: UInt8 = 1, rebuildingFlag: UInt8 = 2

    /// The states the superblock records, as found at assembly: a role
    /// whose member is absent is missing; one present is active unless its
    /// rebuild was under way.
    init(recorded: [RoleState], present: [Bool]) {
        count = recorded.count
        states = recorded
        active = .allocate(capacity: count)
        generations = .allocate(capacity: count)
        generations.initialize(repeating: 0, count: count)
        shadow = .allocate(capacity: count)
        shadow.initialize(repeating: 0, count: count)
        shadowGenerations = .allocate(capacity: count)
        shadowGenerations.initialize(repeating: 0, count: count)
        active.initialize(repeating: 0, count: count)
        for r in 0..<count {
            if !present[r] && (states[r] == .active || states[r] == .rebuilding) { states[r] = .missing }
            if present[r] && states[r] != .rebuilding { states[r] = .active }
            active[r] = !present[r] ? RoleTable.notServed : RoleTable.flag(states[r])
        }
    }

    deinit {
        active.deallocate()
        generations.deallocate()
        shadow.deallocate()
        shadowGenerations.deallocate()
    }

    private static func flag(_ s: RoleState) -> UInt8 {
        s == .active ? activeFlag : s == .rebuilding ? rebuildingFlag : notServed
    }

    /// Role `r` is now `state`; `newMember`: a different member holds it
    /// (its generation moves on). Returns the generation.
    @discardableResult
    func set(_ r: Int, _ state: RoleState, newMember: Bool = false) -> UInt32 {
        precondition(r >= 0 && r < count, "role \(r) of \(count)")
        if newMember { generations[r] &+= 1 }
        states[r] = state
        active[r] = RoleTable.flag(state)
        return generations[r]
    }

    /// A replacement starts taking role `r`'s writes.
    func attachShadow(_ r: Int) {
        shadowGenerations[r] &+= 1
        shadow[r] = 1
    }

    /// The replacement stops (abandoned, or it took the role).
    func detachShadow(_ r: Int) {
        shadow[r] = 0
        shadowGenerations[r] &+= 1
    }

    /// The replacement takes role `r`: a new member, active, no shadow.
    /// Returns the role's new generation.
    func promoteShadow(_ r: Int) -> UInt32 {
        let g = set(r, .active, newMember: true)
        shadow[r] = 0
        return g
    }
}
