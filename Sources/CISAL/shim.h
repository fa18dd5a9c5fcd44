// Intel ISA-L: RAID parity (xor_gen, pq_gen), erasure coding (ec_encode_data,
// gf_invert_matrix) and CRC32C (crc32_iscsi).
#ifndef RAIDFS_CISAL_SHIM_H
#define RAIDFS_CISAL_SHIM_H
#include <isa-l/raid.h>
#include <isa-l/erasure_code.h>
#include <isa-l/crc.h>
#endif
