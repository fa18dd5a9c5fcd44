import Foundation
import CLinux
import Logging
import RAIDControl
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// Serves the control socket of a mounted array. Owner-only: the socket's
/// directory is 0700, the socket 0600, and a peer of another uid (other than
/// root) is refused and logged. Each connection gets its own thread, at most
/// `connectionsMax` at once.
// @unchecked Sendable: its listening fd and connection count change only under `lock`.
public final class ControlServer: @unchecked Sendable {
    public typealias Handler = (ControlRequest, _ send: (ControlResponse) -> Bool) -> Void
    static let connectionsMax = 16

    public let path: String
    private let handler: Handler
    private let logger: Logger
    private var listenFD: Int32 = -1
    private let lock = Lock()
    private var connections = 0
    private var stopped = false

    public init(path: String, logger: Logger, handler: @escaping Handler) {
        self.path = path
        self.logger = logger
        self.handler = handler
    }

    public func start() throws {
        let dir = (path as NSString).deletingLastPathComponent
        if mkdir(dir, 0o700) != 0 && errno != EEXIST { throw FSError.system("mkdir", dir) }
        var st = stat()
        guard lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == geteuid() else {
            throw FSError(EPERM, "\(dir): control directory not owned by this user")
        }
        chmod(dir, 0o700)
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FSError.system("socket", path) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw FSError(ENAMETOOLONG, "\(path): control socket path too long")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { close(fd); throw FSError.system("bind", path) }
        chmod(path, 0o600)
        guard listen(fd, 16) == 0 else { close(fd); throw FSError.system("listen", path) }
        listenFD = fd
        let t = Thread { [weak self] in self?.acceptLoop() }
        t.name = "raidfs-control"
        t.start()
    }

    public func stop() {
        lock.withLock { stopped = true }
        if listenFD >= 0 {
            shutdown(listenFD, Int32(SHUT_RDWR))
            close(listenFD)
            listenFD = -1
        }
        unlink(path)
    }

    private func acceptLoop() {
        while true {
            let fd = listenFD
            if fd < 0 { return }
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                if lock.withLock({ stopped }) { return }
                usleep(10_000)
                continue
            }
            _ = fcntl(c, F_SETFD, FD_CLOEXEC)
            var cred = raidfs_ucred()
            var len = socklen_t(MemoryLayout<raidfs_ucred>.size)
            guard getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0,
                  cred.uid == geteuid() || cred.uid == 0 else {
                logger.warning("control socket: refused a request from uid \(cred.uid) (pid \(cred.pid))")
                _ = ControlWire.send(ControlResponse(ok: false, error: "permission denied: only uid \(geteuid()) may control this array"), fd: c)
                close(c)
                continue
            }
            let admitted: Bool = lock.withLock {
                guard connections < ControlServer.connectionsMax else { return false }
                connections += 1
                return true
            }
            guard admitted else {
                _ = ControlWire.send(ControlResponse(ok: false, error: "busy: too many control connections"), fd: c)
                close(c)
                continue
            }
            let t = Thread { [weak self] in
                self?.serve(c)
                close(c)
                self?.lock.withLock { self?.connections -= 1 }
            }
            t.start()
        }
    }

    private func serve(_ fd: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer: [UInt8] = []
        guard let line = ControlWire.receiveLine(fd: fd, buffer: &buffer) else { return }
        guard let req = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)) else {
            _ = ControlWire.send(ControlResponse(ok: false, error: "malformed request"), fd: fd)
            return
        }
        guard req.version == ControlProtocol.version else {
            _ = ControlWire.send(ControlResponse(ok: false, error: "request version \(req.version) not supported (this daemon speaks \(ControlProtocol.version))"), fd: fd)
            return
        }
        handler(req) { ControlWire.send($0, fd: fd) }
    }
}
