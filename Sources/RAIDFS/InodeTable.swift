import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's view of the namespace: FUSE node ids for what it has looked
/// up, each with the names it is known by, and its lookup count, which
/// `forget` brings back to zero before the node is dropped (as
/// passthrough_ll's inode table does with its file descriptors).
///
/// A file is one node whatever the number of its hard links: a regular
/// file's node is keyed by the file id in its header (a symlink's or
/// device's by its inode number), so `ln f l` and a lookup of `l` give the
/// kernel the node it has for `f`. Directories are keyed by name. A node's path is its first name's parent's path plus
/// that name, so renaming a directory moves everything under it at once.
// @unchecked Sendable: its maps change only under `lock`.
final class InodeTable: @unchecked Sendable {
    struct Name: Hashable {
        let parent: UInt64
        let name: String
    }

    /// What a node stands for when it is not a directory.
    struct Object: Hashable {
        let regular: Bool
        let number: UInt64
    }

    final class Node {
        let id: UInt64
        let isDirectory: Bool
        let object: Object?
        /// Regular files only: the id in the file's header.
        var fileId: UInt64? { object.flatMap { $0.regular ? $0.number : nil } }
        /// The names the kernel knows it by (a directory has one).
        var names: [Name] = []
        var lookups: UInt64 = 0
        /// Known to have no security.capability xattr, and no set-user-ID
        /// or set-group-ID bit that a write drops, as of `xattrGeneration`
        /// (which a change of either moves).
        var withoutCapabilities = false
        var withoutSetid = false
        var xattrGeneration: UInt64 = 0
        /// The attributes last answered for it (lookup, getattr, setattr).
        /// Once its last name is gone while the kernel still holds the node
        /// (an open directory, a working directory, an O_PATH descriptor),
        /// getattr answers them with no link left and setattr changes them,
        /// as ext4 keeps the inode until its last reference goes. (An open
        /// regular file is served through its handle.)
        var attributes: stat?
        var removed: Bool { names.isEmpty && id != InodeTable.rootId }

        init(id: UInt64, isDirectory: Bool, object: Object?) {
            self.id = id
            self.isDirectory = isDirectory
            self.object = object
        }
    }

    static let rootId: UInt64 = 1
    private let lock = Lock()
    private var nodes: [UInt64: Node] = [rootId: Node(id: rootId, isDirectory: true, object: nil)]
    private var byName: [Name: UInt64] = [:]
    private var byObject: [Object: UInt64] = [:]
    private var nextId: UInt64 = 2

    /// The array path of `id`; nil when the kernel asks for a node whose
    /// every name is gone (its caller answers ESTALE, or uses an open handle).
    func path(_ id: UInt64) -> String? {
        lock.withLock { pathLocked(id) }
    }

    func path(_ parent: UInt64, _ name: String) -> String? {
        guard let p = path(parent) else { return nil }
        return p == "/" ? "/" + name : p + "/" + name
    }

    /// A node's path through the first of its names whose parents all
    /// still resolve; names under a directory node the kernel has forgotten
    /// are dropped on the way (the kernel may forget one name's directory
    /// while it keeps the file through another).
    private func pathLocked(_ id: UInt64, depth: Int = 0) -> String? {
        if id == InodeTable.rootId { return "/" }
        guard let n = nodes[id], depth < 4096 else { return nil }
        for name in n.names {
            guard nodes[name.parent] != nil else { continue }
            if let p = pathLocked(name.parent, depth: depth + 1) {
                return p == "/" ? "/" + name.name : p + "/" + name.name
            }
        }
        for name in n.names where nodes[name.parent] == nil { dropNameLocked(name, from: id) }
        return nil
    }

    func fileId(_ id: UInt64) -> UInt64? {
        lock.withLock { nodes[id]?.fileId }
    }

    /// Whether `id` is known to have no security.capability, and the xattr
    /// generation to hand back to `noteWithoutCapabilities`.
    func capabilitiesState(_ id: UInt64) -> (absent: Bool, generation: UInt64) {
        lock.withLock { nodes[id].map { ($0.withoutCapabilities, $0.xattrGeneration) } ?? (false, 0) }
    }

    /// A getxattr found no security.capability: remember it unless an
    /// xattr changed since `generation` was read.
    func noteWithoutCapabilities(_ id: UInt64, generation: UInt64) {
        note(id, generation) { $0.withoutCapabilities = true }
    }

    /// An xattr of `id` changes: forget what was known.
    func xattrsChanging(_ id: UInt64) { note(id, nil) { $0.withoutCapabilities = false } }

    /// Whether `id` is known to hold nothing a write must drop (see
    /// `withoutSetid`), and the generation to hand back to the notes.
    func privilegeState(_ id: UInt64) -> (withoutCapabilities: Bool, withoutSetid: Bool, generation: UInt64) {
        lock.withLock { nodes[id].map { ($0.withoutCapabilities, $0.withoutSetid, $0.xattrGeneration) } ?? (false, false, 0) }
    }

    /// Its mode was found without set-user-ID and set-group-ID-with-group-
    /// execute: remember it unless something changed since `generation`.
    func noteWithoutSetid(_ id: UInt64, generation: UInt64) {
        note(id, generation) { $0.withoutSetid = true }
    }

    /// The mode of `id` changes: forget what was known of its setid bits.
    func modeChanging(_ id: UInt64) { note(id, nil) { $0.withoutSetid = false } }

    /// Applies `change` to node `id` if nothing changed since `generation`;
    /// with nil, a change: applied, and the generation moves.
    private func note(_ id: UInt64, _ generation: UInt64?, _ change: (Node) -> Void) {
        lock.withLock {
            guard let n = nodes[id] else { return }
            if let generation {
                if n.xattrGeneration == generation { change(n) }
            } else {
                change(n)
                n.xattrGeneration += 1
            }
        }
    }

    /// A lookup answered with `st` for `name` in `parent`: the node, its
    /// lookup count one higher.
    func remember(_ parent: UInt64, _ name: String, _ st: stat) -> UInt64 {
        let key = Name(parent: parent, name: name)
        let isRegular = (st.st_mode & S_IFMT) == S_IFREG
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        return lock.withLock { rememberLocked(key, st, isRegular: isRegular, isDirectory: isDirectory) }
    }

    private func rememberLocked(_ key: Name, _ st: stat, isRegular: Bool, isDirectory: Bool) -> UInt64 {
        // Anything but a directory may have hard links: one node per object
        // (a regular file by its file id, anything else by the first
        // member's inode number, which getattr reports for it).
        let object = isDirectory ? nil : Object(regular: isRegular, number: UInt64(st.st_ino))
        var node: Node? = nil
        if let object {
            node = byObject[object].flatMap { nodes[$0] }
        } else if let id = byName[key], let n = nodes[id], n.isDirectory {
            node = n
        }
        if node == nil {
            let n = Node(id: nextId, isDirectory: isDirectory, object: object)
            nextId += 1
            nodes[n.id] = n
            if let object { byObject[object] = n.id }
            node = n
        }
        let n = node!
        if let other = byName[key], other != n.id {
            dropNameLocked(key, from: other)
            forgetObjectIfGoneLocked(other)
        }
        if n.names.first != key {
            // A directory has one name: a new one replaces the old. Any
            // node's latest name goes first, the one its path is built from.
            if n.isDirectory { for old in n.names { byName[old] = nil }; n.names = [] }
            n.names.removeAll { $0 == key }
            n.names.insert(key, at: 0)
        }
        byName[key] = n.id
        n.lookups += 1
        n.attributes = st
        return n.id
    }

    /// The kernel dropped `count` of its references to `id`.
    func forget(_ id: UInt64, _ count: UInt64) {
        lock.withLock { forgetLocked(id, count) }
    }

    private func forgetLocked(_ id: UInt64, _ count: UInt64) {
        guard id != InodeTable.rootId, let n = nodes[id] else { return }
        n.lookups = n.lookups > count ? n.lookups - count : 0
        if n.lookups == 0 {
            for k in n.names where byName[k] == id { byName[k] = nil }
            if let o = n.object, byObject[o] == id { byObject[o] = nil }
            nodes[id] = nil
        }
    }

    /// `name` in `parent` is gone (unlink, rmdir, or replaced by a rename).
    func removed(_ parent: UInt64, _ name: String) {
        let key = Name(parent: parent, name: name)
        lock.withLock {
            guard let id = byName[key] else { return }
            dropNameLocked(key, from: id)
            forgetObjectIfGoneLocked(id)
        }
    }

    /// A node other than a regular file is known by the first member's
    /// inode number, which the member's filesystem reuses once the object
    /// is gone: a node with no name left gives that number up, so a new
    /// object with it gets a node of its own (the kernel may still hold
    /// the old one, through an O_PATH descriptor). A regular file's id is
    /// never reused.
    private func forgetObjectIfGoneLocked(_ id: UInt64) {
        guard let n = nodes[id], n.names.isEmpty, let o = n.object, !o.regular, byObject[o] == id else { return }
        byObject[o] = nil
    }

    /// The attributes answered for node `id`.
    func noteAttributes(_ id: UInt64, _ st: stat) {
        lock.withLock { nodes[id]?.attributes = st }
    }

    /// A removed node's attributes (nil for a node with a name), after
    /// `change` if given (a setattr of it).
    func removedAttributes(_ id: UInt64, change: ((inout stat) -> Void)? = nil) -> stat? {
        lock.withLock {
            guard let n = nodes[id], n.removed, var st = n.attributes else { return nil }
            if let change {
                change(&st)
                n.attributes = st
            }
            st.st_nlink = 0
            return st
        }
    }

    /// A rename: what was at `to` loses that name, and the node at `from`
    /// takes it (RENAME_EXCHANGE: the two swap).
    func renamed(_ from: Name, _ to: Name, exchange: Bool) {
        lock.withLock { renamedLocked(from, to, exchange: exchange) }
    }

    private func renamedLocked(_ from: Name, _ to: Name, exchange: Bool) {
        let moving = byName[from], replaced = byName[to]
        if let r = replaced {
            dropNameLocked(to, from: r)
            if !exchange && r != moving { forgetObjectIfGoneLocked(r) }
        }
        if let m = moving { dropNameLocked(from, from: m) }
        if let m = moving, let n = nodes[m] { n.names.append(to); byName[to] = m }
        if exchange, let r = replaced, let n = nodes[r] { n.names.append(from); byName[from] = r }
    }

    private func dropNameLocked(_ key: Name, from id: UInt64) {
        if byName[key] == id { byName[key] = nil }
        nodes[id]?.names.removeAll { $0 == key }
    }
}
