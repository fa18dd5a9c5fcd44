#if canImport(Glibc)
import Glibc
#endif

/// A problem as a person reads it: which file, where, on which member.
public struct CheckFinding: Sendable, CustomStringConvertible {
    public let path: String
    public let offset: UInt64
    public let member: String
    public let role: Int
    public let what: String
    public let repaired: Bool
    public let unrecoverable: Bool

    public var description: String {
        let tail = unrecoverable ? " — beyond redundancy" : (repaired ? " — repaired" : "")
        return "\(path) offset \(offset): \(what) on member \(role) (\(member))\(tail)"
    }
}

public struct CheckSummary: Sendable {
    public var filesChecked = 0
    public var stripesChecked: UInt64 = 0
    public var bytesChecked: UInt64 = 0
    public var problems = 0
    public var repaired = 0
    public var unrecoverable = 0

    /// `raidctl check` exit code: 0 clean, 1 repairable (or repaired), 2 beyond redundancy.
    public var exitCode: Int32 { unrecoverable > 0 ? 2 : (problems > 0 ? 1 : 0) }
}

/// Walks the whole namespace and checks every stripe of every file: the
/// engine behind `raidctl check`, and the one a scrubber drives.
extension RAIDArray {
    public func checkAll(mode: CheckMode, shouldStop: () -> Bool = { false },
                         report: (CheckFinding) -> Void) throws -> CheckSummary {
        var summary = CheckSummary()
        try walk { path, type in
            if shouldStop() { return false }
            guard type == UInt8(DT_REG) else { return true }
            do {
                let af = try open(path)
                defer { release(af) }
                summary.filesChecked += 1
                try af.checkAll(mode: mode) { stripe, result in
                    let stripeStart = geometry.stripeStart(stripe)
                    if result.unrecoverable {
                        summary.unrecoverable += 1
                        report(CheckFinding(path: path, offset: stripeStart, member: "-", role: -1,
                                            what: "stripe \(stripe): \(result.problems.count) chunks bad with \(geometry.memberCount - activeRoles.count) members missing",
                                            repaired: false, unrecoverable: true))
                    }
                    for p in result.problems {
                        summary.problems += 1
                        if result.repaired { summary.repaired += 1 }
                        let (offset, chunk) = geometry.locate(p, stripe: stripe)
                        report(CheckFinding(path: path, offset: offset, member: memberName(p.role), role: p.role,
                                            what: "stripe \(stripe): \(p.kind.rawValue) in \(chunk)", repaired: result.repaired,
                                            unrecoverable: result.unrecoverable))
                    }
                }
                summary.stripesChecked += af.stripeCount
                summary.bytesChecked += af.currentSize()
            } catch let e as FSError where e.errno == EIO {
                // No active member's header reads: the whole file is lost
                // (beyond redundancy), which is a finding, not the end of
                // the check.
                summary.unrecoverable += 1
                report(CheckFinding(path: path, offset: 0, member: "-", role: -1, what: "file header: \(e.message)",
                                    repaired: false, unrecoverable: true))
            }
            return true
        }
        return summary
    }
}
