import RAIDControl
import RAIDMembers

extension RAIDArray {
    /// `raidctl inject MEMBER FAULT`: sets a fault on a role's member (one
    /// fault of each kind; a new one of a kind replaces the old).
    public func injectFault(_ memberName: String, _ fault: InjectedFault) throws -> String {
        let role = try resolveRole(memberName)
        guard let m = member(role) as? FaultInjectingMember else {
            throw FSError.invalid("member \(role) has no member attached (\(roleState(role).rawValue))")
        }
        m.inject(fault)
        eventLog.record(ArrayEvent(kind: .faultInjected, member: role, message: "\(fault) injected on \(m.name)"))
        return "member \(role) (\(m.name)): \(fault) injected"
    }

    /// `raidctl inject MEMBER clear`, or every member's faults with no MEMBER.
    public func clearFaults(_ memberName: String?) throws -> String {
        let roles = try memberName.map { [try resolveRole($0)] } ?? Array(0..<geometry.memberCount)
        for role in roles {
            guard let m = member(role) as? FaultInjectingMember, !m.faults.isEmpty else { continue }
            m.clearFaults()
            eventLog.record(ArrayEvent(kind: .faultsCleared, member: role, message: "injected faults cleared on \(m.name)"))
        }
        return memberName == nil ? "injected faults cleared on every member" : "member \(roles[0]): injected faults cleared"
    }

    /// The faults injected on a role's member, as status lists them.
    func injectedFaults(_ role: Int) -> [String] {
        (member(role) as? FaultInjectingMember)?.faults.map { $0.description } ?? []
    }
}
