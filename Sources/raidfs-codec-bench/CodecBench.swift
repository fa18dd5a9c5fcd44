// Codec microbenchmark: parity encode and decode through RAIDCore's Codec,
// on the same buffer shapes with which tools/bench/codec.c drives ISA-L
// from C. Prints one TSV line per cell: impl, level, op, chunk bytes, and
// GB/s of data chunks processed.
//   raidfs-codec-bench [BYTES_PER_CELL]
import RAIDCore
#if canImport(Glibc)
import Glibc
#endif

@main
enum CodecBench {
    /// The geometries the array benchmarks use: RAID 5 of 4, RAID 6 of 6.
    static let shapes: [(name: String, level: RAIDLevel, k: Int, m: Int)] = [
        ("raid5", .raid5, 3, 1), ("raid6", .raid6, 4, 2),
    ]
    static let chunks = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20]

    static func main() {
        let args = CommandLine.arguments
        let perCell = args.count > 1 ? Int(args[1]) ?? (1 << 30) : (1 << 30)
        for shape in shapes {
            let codec = Codec(level: shape.level, dataCount: shape.k, parityCount: shape.m)
            for chunk in chunks {
                measure(codec, shape.name, k: shape.k, m: shape.m, chunk: chunk, perCell: perCell)
            }
        }
    }

    /// Buffers: k data, m parity, then m outputs for the decode.
    static func measure(_ codec: Codec, _ name: String, k: Int, m: Int, chunk: Int, perCell: Int) {
        let n = k + m
        let buffers = (0..<(n + m)).map { _ in AlignedBuffer(count: chunk) }
        for (i, b) in buffers.enumerated() { memset(b.pointer, Int32(i * 37 + 1), chunk) }
        let all = UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>.allocate(capacity: n)
        let src = UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>.allocate(capacity: k)
        let outs = UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>.allocate(capacity: m)
        defer { all.deallocate(); src.deallocate(); outs.deallocate() }
        let iterations = max(16, perCell / (k * chunk))
        let dataBytes = Double(iterations * k * chunk)

        for i in 0..<n { all[i] = buffers[i].bytes }
        let encode = seconds { for _ in 0..<iterations { codec.encode(all, length: chunk) } }
        emit(name, "encode", chunk, dataBytes / encode)

        // Lose the first m data chunks; rebuild them from the next k chunks.
        let lost = Array(0..<m)
        let sources = Array(m..<(m + k))
        for (j, s) in sources.enumerated() { src[j] = buffers[s].bytes }
        for j in 0..<m { outs[j] = buffers[n + j].bytes }
        let decode = seconds {
            for _ in 0..<iterations {
                try! codec.reconstruct(sources: sources, sourcePointers: src, wanted: lost, outputs: outs, length: chunk)
            }
        }
        for j in 0..<m where memcmp(outs[j]!, buffers[j].pointer, chunk) != 0 {
            fatalError("decode of data chunk \(j) at \(chunk) bytes is wrong")
        }
        emit(name, "decode", chunk, dataBytes / decode)
        withExtendedLifetime(buffers) {}
    }

    /// The best of three timed runs of `body`: a run the scheduler cut
    /// into (two cores, other processes) measures the machine, not the code.
    /// tools/bench/codec.c does the same.
    static func seconds(_ body: () -> Void) -> Double {
        var best = Double.infinity
        for _ in 0..<3 {
            var a = timespec(), b = timespec()
            clock_gettime(CLOCK_MONOTONIC, &a)
            body()
            clock_gettime(CLOCK_MONOTONIC, &b)
            best = min(best, Double(b.tv_sec - a.tv_sec) + Double(b.tv_nsec - a.tv_nsec) / 1e9)
        }
        return best
    }

    static func emit(_ level: String, _ op: String, _ chunk: Int, _ bytesPerSecond: Double) {
        print("swift\t\(level)\t\(op)\t\(chunk)\t\((bytesPerSecond / 1e6).rounded() / 1e3)")
    }
}
