#if canImport(Glibc)
import Glibc
#endif

/// fallocate for array files: reserving space on every member, and punching
/// holes that then read as zeros with parity that agrees.
extension ArrayFile {
    /// Reserves member space for [offset, offset+length); extends the size
    /// unless `keepSize`. EOPNOTSUPP when a member's filesystem cannot.
    public func allocate(offset: UInt64, length: UInt64, keepSize: Bool) throws {
        guard !array.readOnly else { throw FSError(EROFS, "\(displayPath): read-only array") }
        guard length > 0 else { throw FSError(EINVAL, "\(displayPath): fallocate of zero bytes") }
        guard offset <= UInt64(Int64.max) - length else { throw FSError(EFBIG, "\(displayPath): fallocate past 2^63 bytes") }
        try array.requireFits(offset + length, "\(displayPath): fallocate")
        try lock.withWriteLock {
            let (from, to) = memberRange(offset: offset, length: length)
            for role in 0..<array.geometry.memberCount {
                if let error = eachTarget(role, { try $0.allocate(at: from, length: to - from) }) {
                    if let e = error as? FSError, e.errno == EOPNOTSUPP || e.errno == ENOSPC || e.errno == EDQUOT || e.errno == EFBIG {
                        throw FSError(e.errno, "\(displayPath): fallocate: \(e.message)")
                    }
                    array.noteWriteError(role: role, error)
                }
            }
            try array.requireNotFailed(displayPath)
            if !keepSize && offset + length > size {
                size = offset + length
                try writeHeadersLocked()
            }
        }
    }

    /// Zeroes [offset, offset+length) within the file (the size stays):
    /// whole stripes are deallocated on every member (their chunks and
    /// parity become zeros, which agree), partial ones written with zeros.
    public func punchHole(offset: UInt64, length: UInt64) throws {
        guard !array.readOnly else { throw FSError(EROFS, "\(displayPath): read-only array") }
        try lock.withWriteLock {
            guard offset < size, length > 0 else { return }
            let end = min(size, offset + length)
            let g = array.geometry
            // The leading stripes (4 KiB chunks, entries in the attribute)
            // are written with zeros; whole stripes past them deallocated.
            let firstWhole = max(g.stripe(atOrAfter: offset), Geometry.leadingStripes)
            let endWhole = g.stripe(at: end)      // exclusive
            let first = g.stripe(at: offset), last = g.stripe(at: end - 1)
            // Only where some member holds data is there anything to punch
            // (or to log): the work follows the bytes, not the range.
            let regions = regionsToLog(first...last)
            try array.intentLog.begin(self, regions: regions)
            defer { array.intentLog.end(self, regions: regions) }
            func zeros(_ a: UInt64, _ b: UInt64) throws {
                if b > a {
                    try writeLocked(from: UnsafeRawPointer(array.resources.zeroStripe.pointer), count: Int(b - a), at: a, sourceIsZeros: true)
                }
            }
            defer { markModifiedLocked() }
            if firstWhole >= endWhole {
                try zeros(offset, end)
                return
            }
            try zeros(offset, g.stripeStart(firstWhole))
            try zeros(g.stripeStart(endWhole), end)
            let per = array.intentLog.regionStripes
            for region in regions {
                var s = max(firstWhole, region * per)
                let stop = min(endWhole, (region + 1) * per)
                while s < stop {
                    // One run of chunks per checksum table group.
                    let layout = array.layout
                    let lead = Geometry.leadingStripes
                    let groupEnd = min(stop, lead + ((s - lead) / layout.chunksPerGroup + 1) * layout.chunksPerGroup)
                    let chunkFrom = layout.chunkOffset(stripe: s)
                    let chunkTo = layout.chunkOffset(stripe: groupEnd - 1) + UInt64(array.geometry.chunkSizeBytes)
                    let entryFrom = layout.entryOffset(stripe: s)
                    let entryBytes = Int((groupEnd - s) * layout.sectorsPerChunk * MemberFileLayout.entryBytes)
                    for role in 0..<array.geometry.memberCount {
                        let error = eachTarget(role) { f in
                            do {
                                try f.punchHole(at: chunkFrom, length: chunkTo - chunkFrom)
                            } catch let e as FSError where e.errno == EOPNOTSUPP {
                                // No hole punching on this host: write the zeros.
                                var at = chunkFrom
                                while at < chunkTo {
                                    let n = Int(min(UInt64(array.resources.zeroStripe.count), chunkTo - at))
                                    try f.write(from: array.resources.zeroStripe.pointer, count: n, at: at)
                                    at += UInt64(n)
                                }
                            }
                            try f.write(from: array.resources.zeroStripe.pointer, count: entryBytes, at: entryFrom)
                        }
                        entryCaches[role].invalidate()
                        if let error { array.noteWriteError(role: role, error) }
                    }
                    s = groupEnd
                }
            }
            try array.requireNotFailed(displayPath)
        }
    }

    /// The member-file byte range holding the chunks of the stripes that
    /// [offset, offset+length) touches (tables between them included).
    private func memberRange(offset: UInt64, length: UInt64) -> (UInt64, UInt64) {
        let g = array.geometry, layout = array.layout
        let first = g.stripe(at: offset), last = g.stripe(at: offset + length - 1)
        let from = MemberFileLayout.isLeading(first) ? layout.chunkOffset(stripe: first) : layout.tableOffset(stripe: first)
        return (from, layout.chunkOffset(stripe: last) + UInt64(g.chunkBytes(last)))
    }
}
