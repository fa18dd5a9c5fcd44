import Foundation
import RAIDControl
import RAIDCore

/// Answers control requests for a mounted array (the daemon's side of
/// `raidctl`). Every request either changes the array as asked or changes
/// nothing and says why.
enum ArrayController {
    public static func handle(_ array: RAIDArray, _ req: ControlRequest, send: (ControlResponse) -> Bool) {
        do {
            guard let command = ControlCommand(rawValue: req.command) else {
                throw FSError.invalid("unknown command \(req.command)")
            }
            switch command {
            case .status:
                _ = send(ControlResponse(ok: true, status: array.status()))
            case .fail:
                let role = try array.resolveRole(try required(req.member, "member"))
                _ = send(ControlResponse(ok: true, message: try array.failByAdministrator(role, force: req.force ?? false),
                                         status: array.status()))
            case .remove:
                _ = send(ControlResponse(ok: true, message: try array.removeMember(try required(req.member, "member"), force: req.force ?? false),
                                         status: array.status()))
            case .add:
                _ = send(ControlResponse(ok: true, message: try array.addSpare(directory: try required(req.directory, "directory")),
                                         status: array.status()))
            case .events:
                if req.follow == true {
                    let queue = EventQueue()
                    let id = array.eventLog.follow { queue.push($0) }
                    defer { array.eventLog.unfollow(id) }
                    guard send(ControlResponse(ok: true, events: array.eventLog.history())) else { return }
                    while true {
                        // An empty batch each idle second notices a follower that went away.
                        let batch = queue.pop().map { [$0] } ?? []
                        if !send(ControlResponse(ok: true, events: batch)) { return }
                    }
                } else {
                    _ = send(ControlResponse(ok: true, events: array.eventLog.history()))
                }
            case .replace:
                _ = send(ControlResponse(ok: true, message: try array.replace(try required(req.member, "member"),
                                                                             directory: try required(req.directory, "directory")),
                                         status: array.status()))
            case .scrub:
                let message: String
                switch ScrubMode(rawValue: req.mode ?? ScrubMode.repair.rawValue) {
                case .repair: message = try array.startScrub(repair: true)
                case .check: message = try array.startScrub(repair: false)
                case .stop: message = try array.stopScrub()
                case nil: throw FSError.invalid("unknown scrub mode \(req.mode ?? "") (repair, check or stop)")
                }
                _ = send(ControlResponse(ok: true, message: message, status: array.status()))
            case .clear:
                _ = send(ControlResponse(ok: true, message: try array.clearCounters(req.member), status: array.status()))
            case .inject:
                let message: String
                if req.fault == "clear" || req.fault == nil {
                    message = try array.clearFaults(req.member)
                } else {
                    let fault = try InjectedFault.parse(req.fault!, rate: req.rate, count: req.count)
                    message = try array.injectFault(try required(req.member, "member"), fault)
                }
                _ = send(ControlResponse(ok: true, message: message, status: array.status()))
            }
        } catch let e as FSError {
            _ = send(ControlResponse(ok: false, error: e.message))
        } catch {
            _ = send(ControlResponse(ok: false, error: "\(error)"))
        }
    }

    private static func required(_ v: String?, _ name: String) throws -> String {
        guard let v, !v.isEmpty else { throw FSError.invalid("request lacks \(name)") }
        return v
    }
}
