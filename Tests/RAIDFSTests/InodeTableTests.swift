import XCTest
import Glibc
@testable import RAIDFS

/// The adapter's inode table on its own: lookup counts that `forget`
/// brings to zero, one node per file whatever its names, directory
/// renames that move what is under them, and names that a rename or an
/// unlink takes away.
final class InodeTableTests: XCTestCase {
    let root = InodeTable.rootId

    func attributes(_ type: mode_t, _ number: UInt64) -> stat {
        var st = stat()
        st.st_mode = type | 0o644
        st.st_ino = ino_t(number)
        return st
    }
    func file(_ id: UInt64) -> stat { attributes(S_IFREG, id) }
    func directory(_ ino: UInt64) -> stat { attributes(S_IFDIR, ino) }
    func symlink(_ ino: UInt64) -> stat { attributes(S_IFLNK, ino) }

    func testLookupsCountUntilForgetDropsTheNode() {
        let t = InodeTable()
        let a = t.remember(root, "a", file(1 << 40))
        XCTAssertEqual(t.remember(root, "a", file(1 << 40)), a, "a second lookup of one name gives the same node")
        XCTAssertEqual(t.path(a), "/a")
        XCTAssertEqual(t.fileId(a), 1 << 40)
        t.forget(a, 1)
        XCTAssertEqual(t.path(a), "/a", "one lookup is left")
        t.forget(a, 1)
        XCTAssertNil(t.path(a), "forgotten as often as looked up: gone")
        XCTAssertNil(t.fileId(a))
        XCTAssertNotEqual(t.remember(root, "a", file(1 << 40)), a, "a node id is never handed out twice")
    }

    func testForgetMoreThanTheLookupsDropsTheNodeOnce() {
        let t = InodeTable()
        let a = t.remember(root, "a", file(7))
        t.forget(a, 5)
        XCTAssertNil(t.path(a))
        t.forget(a, 1)   // the kernel never does this; it must not trap
        t.forget(root, 1)
        XCTAssertEqual(t.path(root), "/", "the root is never forgotten")
    }

    func testHardLinksAreOneNodeAndTheLatestNameGivesThePath() {
        let t = InodeTable()
        let a = t.remember(root, "a", file(42))
        let l = t.remember(root, "l", file(42))
        XCTAssertEqual(a, l, "ln a l: the kernel gets the node it has for a")
        XCTAssertEqual(t.path(a), "/l")
        t.removed(root, "l")
        XCTAssertEqual(t.path(a), "/a", "rm l: the file is still /a")
        t.removed(root, "a")
        XCTAssertNil(t.path(a), "its last name gone")
    }

    func testRenamingADirectoryMovesWhatIsUnderIt() {
        let t = InodeTable()
        let d = t.remember(root, "d", directory(2))
        let sub = t.remember(d, "sub", directory(3))
        let f = t.remember(sub, "f", file(99))
        XCTAssertEqual(t.path(f), "/d/sub/f")
        t.renamed(.init(parent: root, name: "d"), .init(parent: root, name: "e"), exchange: false)
        XCTAssertEqual(t.path(d), "/e")
        XCTAssertEqual(t.path(f), "/e/sub/f", "the file's path follows its directory's new name")
        XCTAssertEqual(t.path(sub, "g"), "/e/sub/g")
    }

    func testARenameOverAFileTakesTheTargetsName() {
        let t = InodeTable()
        let a = t.remember(root, "a", file(10))
        let b = t.remember(root, "b", file(11))
        t.renamed(.init(parent: root, name: "a"), .init(parent: root, name: "b"), exchange: false)
        XCTAssertEqual(t.path(a), "/b")
        XCTAssertNil(t.path(b), "the replaced file has no name left")
        let st = t.removedAttributes(b)
        XCTAssertEqual(st?.st_nlink, 0, "the kernel may still hold it: its attributes say no link is left")
        XCTAssertEqual(st.map { UInt64($0.st_ino) }, 11)
        XCTAssertNil(t.removedAttributes(a), "a node with a name is not removed")
    }

    func testExchangeSwapsTheNames() {
        let t = InodeTable()
        let a = t.remember(root, "a", file(10))
        let b = t.remember(root, "b", directory(11))
        t.renamed(.init(parent: root, name: "a"), .init(parent: root, name: "b"), exchange: true)
        XCTAssertEqual(t.path(a), "/b")
        XCTAssertEqual(t.path(b), "/a")
    }

    func testAReusedInodeNumberOfASymlinkGetsANewNode() {
        let t = InodeTable()
        let s = t.remember(root, "s", symlink(5))
        t.removed(root, "s")
        let s2 = t.remember(root, "s2", symlink(5))
        XCTAssertNotEqual(s, s2, "the member's filesystem reused the number: another object")
        XCTAssertEqual(t.path(s2), "/s2")
    }

    func testANameUnderAForgottenDirectoryIsDropped() {
        let t = InodeTable()
        let d = t.remember(root, "d", directory(2))
        let f = t.remember(d, "f", file(77))
        let g = t.remember(root, "g", file(77))
        XCTAssertEqual(f, g)
        t.forget(d, 1)
        XCTAssertEqual(t.path(f), "/g", "the kernel forgot d but keeps the file through /g")
        t.removed(root, "g")
        XCTAssertNil(t.path(f))
    }

    func testRemovedAttributesTakeASetattrOfTheRemovedNode() {
        let t = InodeTable()
        let a = t.remember(root, "a", file(3))
        t.removed(root, "a")
        let st = t.removedAttributes(a) { $0.st_mode = S_IFREG | 0o600 }
        XCTAssertEqual(st.map { $0.st_mode & 0o777 }, 0o600)
        XCTAssertEqual(t.removedAttributes(a).map { $0.st_mode & 0o777 }, 0o600, "the change is kept")
    }
}
