#if canImport(Glibc)
import Glibc
#endif

/// The largest file: what every member's host lets its member file reach
/// (ext4: 16 TiB), times the data chunks per stripe, less the checksum
/// tables; never past off_t's 2^63 - 1. Past it a write, a truncate or a
/// fallocate gets EFBIG at once with nothing changed, as on ext4.
extension RAIDArray {
    /// Whether a file of `size` bytes fits on every member. O(1): a few
    /// divisions, on every write that extends a file.
    @inline(__always)
    func fits(size: UInt64) -> Bool {
        guard size <= UInt64(Int64.max) else { return false }
        return layout.fileBytes(stripeCount: geometry.stripeCount(size: size)) <= membership.largestMemberFileBytes
    }

    /// The largest file size this array takes with its present members.
    public var largestFileBytes: UInt64 {
        var lo: UInt64 = 0, hi = UInt64(Int64.max)
        while lo < hi {
            let mid = lo + (hi - lo) / 2 + 1
            if fits(size: mid) { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// EFBIG unless a file of `size` bytes fits (truncate, fallocate).
    public func requireFits(_ size: UInt64, _ what: @autoclosure () -> String) throws {
        guard fits(size: size) else {
            throw FSError(EFBIG, "\(what()): \(size) bytes is past the largest file, \(largestFileBytes) bytes")
        }
    }
}

/// Work in proportion to the bytes a file holds, not to its size: a
/// truncate or a hole punched over a petabyte logs and visits only the
/// regions that hold data.
extension ArrayFile {
    /// Ranges spanning more regions than this are logged by the regions
    /// that hold data (a few system calls per region found).
    static let regionsLoggedWhole: UInt64 = 16

    /// The intent log's regions to record before changing stripes
    /// `stripes` (data, parity or their absence): every one for a short
    /// range; for a long one, the first and last and those in between
    /// where some member file holds data (a region that holds none on any
    /// member stays consistent whatever is done to it). Caller holds the
    /// lock exclusive.
    func regionsToLog(_ stripes: ClosedRange<UInt64>) -> [UInt64] {
        let per = array.intentLog.regionStripes
        let first = stripes.lowerBound / per, last = stripes.upperBound / per
        if last - first < Self.regionsLoggedWhole { return Array(first...last) }
        var regions = [first]
        var r = first + 1
        while r < last, let s = nextStripeHoldingData(from: r * per), s / per < last {
            regions.append(max(r, s / per))
            r = regions.last! + 1
        }
        regions.append(last)
        return regions
    }

    /// The first stripe at or after `stripe` (or, at the members' metadata,
    /// just before) whose chunk some attached member file holds data for;
    /// nil when none does. A member whose file cannot be asked is passed
    /// over (its error noted): the checksums still catch what it holds.
    func nextStripeHoldingData(from stripe: UInt64) -> UInt64? {
        let layout = array.layout
        let start = MemberFileLayout.isLeading(stripe) ? layout.chunkOffset(stripe: stripe) : layout.tableOffset(stripe: stripe)
        var found: UInt64? = nil
        for (role, f) in (files + shadowFiles).enumerated() {
            guard let f else { continue }
            do {
                if let at = try f.nextData(from: start) {
                    let s = max(stripe, layout.stripe(atOrBeforeMemberOffset: at))
                    found = min(found ?? s, s)
                }
            } catch {
                array.noteReadError(role: role % array.geometry.memberCount, error)
            }
        }
        return found
    }
}
