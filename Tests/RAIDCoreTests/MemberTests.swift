import Foundation
import XCTest
@testable import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

final class MemberTests: XCTestCase {
    /// `link(_:at:)` names an open member file again (the rebuild does this
    /// for a file it holds open by another name): both names are one inode
    /// with the file's bytes, and a file with no name left cannot be named.
    func testLinkOpenFileByDescriptor() throws {
        let tmp = TempDir()
        let root = tmp.make("m")
        XCTAssertEqual(mkdir(root + "/" + DirectoryMember.dataDirectoryName, 0o755), 0)
        let member = DirectoryMember(root: root)
        try member.mkdir("/d", mode: 0o755)
        let f = try member.open("/a", flags: O_CREAT | O_RDWR, mode: 0o644)
        defer { f.close() }
        let bytes: [UInt8] = Array("seven bytes".utf8)
        try bytes.withUnsafeBytes { try f.write(from: $0.baseAddress!, count: bytes.count, at: 0) }

        try member.link(f, at: "/d/b")
        let a = try member.lstat("/a"), b = try member.lstat("/d/b")
        XCTAssertEqual(a.st_ino, b.st_ino)
        XCTAssertEqual(b.st_nlink, 2)
        XCTAssertThrowsError(try member.link(f, at: "/d/b")) { XCTAssertEqual(($0 as? FSError)?.errno, EEXIST) }

        // Both names gone: the open file is nameless and stays so.
        try member.unlink("/a")
        try member.unlink("/d/b")
        XCTAssertThrowsError(try member.link(f, at: "/c")) { XCTAssertEqual(($0 as? FSError)?.errno, ENOENT) }
        XCTAssertThrowsError(try member.lstat("/c"))
    }

    /// A chmod never follows a symlink out of the member: a diverged
    /// member may hold one where a repair expects a file.
    func testChmodNeverFollowsASymlink() throws {
        let tmp = TempDir()
        let root = tmp.make("m")
        XCTAssertEqual(mkdir(root + "/" + DirectoryMember.dataDirectoryName, 0o755), 0)
        let outside = tmp.make("outside") + "/precious"
        FileManager.default.createFile(atPath: outside, contents: Data("x".utf8))
        XCTAssertEqual(Glibc.chmod(outside, 0o600), 0)
        let member = DirectoryMember(root: root)
        try member.symlink(target: outside, at: "/link")
        try member.chmod("/link", mode: 0o777)
        var st = stat()
        XCTAssertEqual(lstat(outside, &st), 0)
        XCTAssertEqual(st.st_mode & 0o7777, 0o600, "the file outside the member keeps its mode")
        try member.mkdir("/d", mode: 0o700)
        try member.chmod("/d", mode: 0o2755)
        XCTAssertEqual(try member.lstat("/d").st_mode & 0o7777, 0o2755, "anything else takes the mode")
    }
}
