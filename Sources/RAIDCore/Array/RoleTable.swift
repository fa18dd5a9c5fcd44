import Synchronization

/// One immutable picture of every role, as the data path reads it: whether
/// the role is served (active: read and written; rebuilding: written, not
/// read; neither: faulty or missing), whether a replacement takes its writes
/// (its shadow), and the generations that tell a file handle opened on an
/// old member from one on the role's current member.
///
/// A request reads one snapshot and decides from it, so the role's state
/// and generation it sees always belong together.
public final class Membership: Sendable {
    public let states: [RoleState]
    /// Per role, moved on whenever a different member takes the role.
    let generations: [UInt32]
    /// Per role: a replacement is attached, and its generation (moved on
    /// when one attaches or detaches).
    let shadow: [Bool]
    let shadowGenerations: [UInt32]

    init(states: [RoleState], generations: [UInt32], shadow: [Bool], shadowGenerations: [UInt32]) {
        precondition(generations.count == states.count && shadow.count == states.count
                     && shadowGenerations.count == states.count, "one entry per role")
        self.states = states
        self.generations = generations
        self.shadow = shadow
        self.shadowGenerations = shadowGenerations
    }

    public var count: Int { states.count }

    /// Read and written.
    @inline(__always)
    public func isActive(_ role: Int) -> Bool { states[role] == .active }

    /// Active, or being rebuilt: takes writes.
    @inline(__always)
    public func isWritable(_ role: Int) -> Bool { states[role] == .active || states[role] == .rebuilding }

    public var activeRoles: [Int] { (0..<count).filter { states[$0] == .active } }
    public var rebuildingRoles: [Int] { (0..<count).filter { states[$0] == .rebuilding } }
    /// Roles a replacement is taking over.
    public var shadowRoles: [Int] { (0..<count).filter { shadow[$0] } }

    /// A copy with `change` applied.
    fileprivate func with(_ change: (inout [RoleState], inout [UInt32], inout [Bool], inout [UInt32]) -> Void) -> Membership {
        var s = states, g = generations, sh = shadow, shg = shadowGenerations
        change(&s, &g, &sh, &shg)
        return Membership(states: s, generations: g, shadow: sh, shadowGenerations: shg)
    }
}

/// The one writer of every role's state: each change builds a new
/// `Membership` and publishes it with one atomic store, which the data path
/// loads without a lock. `grep -n "roles\.set\|Shadow("` lists every change.
///
/// Written only under the array's `stateLock`, which every caller holds.
/// A published snapshot stays alive as long as the table (`published`
/// keeps them all), so a reader holding one while a writer publishes the
/// next never sees it freed. Membership changes are rare (a failure, a
/// rebuild starting or ending, a replacement), so the list stays short.
final class RoleTable: @unchecked Sendable {
    // @unchecked Sendable: `current` is an atomic load; `published` and
    // every change are under the array's `stateLock`.
    private let currentSnapshot: Atomic<Unmanaged<Membership>>
    private var published: [Membership]

    /// The states the superblock records, as found at assembly: a role
    /// whose member is absent is missing; one present is active unless its
    /// rebuild was under way.
    init(recorded: [RoleState], present: [Bool]) {
        precondition(recorded.count == present.count, "one presence per role")
        var states = recorded
        for r in states.indices {
            if !present[r] && (states[r] == .active || states[r] == .rebuilding) { states[r] = .missing }
            if present[r] && states[r] != .rebuilding { states[r] = .active }
        }
        let n = states.count
        let first = Membership(states: states, generations: Array(repeating: 0, count: n),
                               shadow: Array(repeating: false, count: n), shadowGenerations: Array(repeating: 0, count: n))
        published = [first]
        currentSnapshot = Atomic(Unmanaged.passUnretained(first))
    }

    /// The snapshot in force (no lock).
    @inline(__always)
    var current: Membership { currentSnapshot.load(ordering: .acquiring).takeUnretainedValue() }

    private func publish(_ m: Membership) {
        published.append(m)
        currentSnapshot.store(Unmanaged.passUnretained(m), ordering: .releasing)
    }

    /// Role `r` is now `state`; `newMember`: a different member holds it
    /// (its generation moves on). Returns the generation.
    @discardableResult
    func set(_ r: Int, _ state: RoleState, newMember: Bool = false) -> UInt32 {
        precondition(r >= 0 && r < current.count, "role \(r) of \(current.count)")
        let next = current.with { s, g, _, _ in
            if newMember { g[r] &+= 1 }
            s[r] = state
        }
        publish(next)
        return next.generations[r]
    }

    /// A replacement starts taking role `r`'s writes.
    func attachShadow(_ r: Int) {
        publish(current.with { _, _, sh, shg in
            shg[r] &+= 1
            sh[r] = true
        })
    }

    /// The replacement stops (abandoned, or it took the role).
    func detachShadow(_ r: Int) {
        publish(current.with { _, _, sh, shg in
            sh[r] = false
            shg[r] &+= 1
        })
    }

    /// The replacement takes role `r`: a new member, active, no shadow, in
    /// one snapshot. Returns the role's new generation.
    func promoteShadow(_ r: Int) -> UInt32 {
        let next = current.with { s, g, sh, _ in
            g[r] &+= 1
            s[r] = .active
            sh[r] = false
        }
        publish(next)
        return next.generations[r]
    }
}
