import Synchronization

/// A member holding a place in the array, with the identity its superblock
/// carries.
public struct Seat: Sendable {
    public let uuid: String
    public let member: Member
}

/// One immutable picture of the array's membership, as the data path reads
/// it: each role's state (active: read and written; rebuilding: written, not
/// read; faulty or missing: neither), the member holding it, the replacement
/// taking its writes (its shadow), the hot spares, and the generations that
/// tell a file handle opened on an old member from one on the role's
/// current member.
///
/// A request reads one snapshot and decides from it, so the role's state,
/// member and generation it sees always belong together.
public final class Membership: Sendable {
    public let states: [RoleState]
    /// Per role, moved on whenever a different member takes the role.
    let generations: [UInt32]
    /// Per role: the member holding it and its identity, if any.
    let seats: [Seat?]
    /// Per role: the replacement attached, and its generation (moved on
    /// when one attaches or detaches).
    let shadows: [Seat?]
    let shadow: [Bool]
    let shadowGenerations: [UInt32]
    /// Hot spares, holding no role yet, in the order they take one.
    let spares: [Seat]
    /// The longest member file every member here can hold (the least of
    /// their hosts' limits; UInt64.max when none can tell): what bounds
    /// the array's largest file (`RAIDArray.fits`).
    let largestMemberFileBytes: UInt64

    fileprivate init(_ d: MembershipDraft) {
        states = d.states
        generations = d.generations
        seats = d.seats
        shadows = d.shadows
        shadow = d.shadows.map { $0 != nil }
        shadowGenerations = d.shadowGenerations
        spares = d.spares
        // (Each member probes its host once and keeps the answer.)
        largestMemberFileBytes = (d.seats + d.shadows + d.spares.map { Optional($0) })
            .compactMap { $0?.member.largestFileBytes() }.min() ?? .max
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
    public var writableRoles: [Int] { (0..<count).filter { isWritable($0) } }
    /// Roles a replacement is taking over.
    public var shadowRoles: [Int] { (0..<count).filter { shadow[$0] } }
    /// Roles lost: faulty, or with no member.
    public var lostRoles: [Int] { (0..<count).filter { states[$0] == .faulty || states[$0] == .missing } }

    /// Roles not active, counting a rebuilding one as lost (it cannot be
    /// read yet).
    public var unreadableCount: Int { states.filter { $0 != .active }.count }
}

/// A change to the membership being prepared: a copy of one snapshot that
/// the methods below change, each keeping the whole consistent. Nothing a
/// draft does is seen until `RoleTable.publish` makes it the snapshot.
///
/// These methods are the only code that changes a role's state, member or
/// generation: `grep -n "mutating func" RoleTable.swift` lists every kind
/// of change.
struct MembershipDraft {
    private(set) var states: [RoleState]
    private(set) var generations: [UInt32]
    private(set) var seats: [Seat?]
    private(set) var shadows: [Seat?]
    private(set) var shadowGenerations: [UInt32]
    private(set) var spares: [Seat]
    /// Something changed (or `recordOnly` asked for it): the superblocks
    /// must take it before it is published.
    private(set) var needsPersist = false

    init(_ m: Membership) {
        states = m.states
        generations = m.generations
        seats = m.seats
        shadows = m.shadows
        shadowGenerations = m.shadowGenerations
        spares = m.spares
    }

    /// As the superblocks record it, at assembly: a role whose member is
    /// absent is missing; one present is active unless its rebuild was
    /// under way.
    init(recorded: [RoleState], seats: [Seat?], spares: [Seat]) {
        precondition(recorded.count == seats.count, "one seat per role")
        states = recorded
        for r in states.indices {
            if seats[r] == nil && (states[r] == .active || states[r] == .rebuilding) { states[r] = .missing }
            if seats[r] != nil && states[r] != .rebuilding { states[r] = .active }
        }
        generations = Array(repeating: 0, count: states.count)
        self.seats = seats
        shadows = Array(repeating: nil, count: states.count)
        shadowGenerations = Array(repeating: 0, count: states.count)
        self.spares = spares
    }

    private mutating func check(_ r: Int) {
        precondition(r >= 0 && r < states.count, "role \(r) of \(states.count)")
        needsPersist = true
    }

    /// No role changes, but the records the change edits (a rebuild's
    /// checkpoints, a replacement) must reach the superblocks.
    mutating func recordOnly() { needsPersist = true }

    /// Role `r`'s member failed: it is no longer read or written.
    mutating func fail(_ r: Int) {
        check(r)
        precondition(states[r] == .active || states[r] == .rebuilding, "only a serving role fails")
        states[r] = .faulty
    }

    /// A rebuild of role `r` completed: it is read again.
    mutating func activate(_ r: Int) {
        check(r)
        precondition(states[r] == .rebuilding, "only a rebuilt role becomes active")
        states[r] = .active
    }

    /// Role `r` (faulty or missing) gives up its member.
    mutating func vacate(_ r: Int) {
        check(r)
        precondition(states[r] == .faulty || states[r] == .missing, "only a lost role is vacated")
        seats[r] = nil
        states[r] = .missing
        generations[r] &+= 1
    }

    mutating func addSpare(_ s: Seat) {
        precondition(!spares.contains { $0.uuid == s.uuid }, "spare \(s.uuid) listed once")
        spares.append(s)
        needsPersist = true
    }

    /// Drops spare `uuid`; false when it was not listed.
    @discardableResult
    mutating func removeSpare(_ uuid: String) -> Bool {
        guard let i = spares.firstIndex(where: { $0.uuid == uuid }) else { return false }
        spares.remove(at: i)
        needsPersist = true
        return true
    }

    /// Spare `uuid` takes lost role `r`, to be rebuilt onto.
    mutating func seatSpare(_ uuid: String, in r: Int) {
        check(r)
        precondition(states[r] == .faulty || states[r] == .missing, "a spare takes only a lost role")
        guard let i = spares.firstIndex(where: { $0.uuid == uuid }) else { preconditionFailure("spare \(uuid) is not listed") }
        seats[r] = spares.remove(at: i)
        states[r] = .rebuilding
        generations[r] &+= 1
    }

    /// A replacement starts taking active role `r`'s writes.
    mutating func attachShadow(_ r: Int, _ s: Seat) {
        check(r)
        precondition(shadows[r] == nil, "one replacement per role")
        shadows[r] = s
        shadowGenerations[r] &+= 1
    }

    /// The replacement of role `r` stops (abandoned).
    mutating func detachShadow(_ r: Int) {
        check(r)
        shadows[r] = nil
        shadowGenerations[r] &+= 1
    }

    /// The replacement takes role `r`: a new member, active, no shadow.
    mutating func promoteShadow(_ r: Int) {
        check(r)
        guard let s = shadows[r] else { preconditionFailure("role \(r) has no replacement") }
        seats[r] = s
        shadows[r] = nil
        states[r] = .active
        generations[r] &+= 1
    }
}

/// Holds the membership in force and publishes each new one with one
/// atomic store, which the data path loads without a lock. Changes are made
/// on a `MembershipDraft` and published only by `RAIDArray`'s
/// `commitMembership` and `forceMembership` (MembershipChanges.swift), which
/// persist the superblocks and record the events.
///
/// Published under the array's `stateLock`. A published snapshot stays alive
/// as long as the table (`published` keeps them all), so a reader holding
/// one while a writer publishes the next never sees it freed. Membership
/// changes are rare (a failure, a rebuild starting or ending, a spare, a
/// replacement), so the list stays short.
final class RoleTable: @unchecked Sendable {
    // @unchecked Sendable: `current` is an atomic load; `published` and
    // `publish` are under the array's `stateLock`.
    private let currentSnapshot: Atomic<Unmanaged<Membership>>
    private var published: [Membership]

    init(_ first: MembershipDraft) {
        let m = Membership(first)
        published = [m]
        currentSnapshot = Atomic(Unmanaged.passUnretained(m))
    }

    /// The snapshot in force (no lock).
    @inline(__always)
    var current: Membership { currentSnapshot.load(ordering: .acquiring).takeUnretainedValue() }

    /// Makes `draft` the snapshot in force. Caller holds `stateLock`.
    func publish(_ draft: MembershipDraft) {
        let m = Membership(draft)
        published.append(m)
        currentSnapshot.store(Unmanaged.passUnretained(m), ordering: .releasing)
    }
}
