#version 450
// The frame checksum's sums over one frame in the ring (FrameChecksum.swift has the same function on
// the CPU, and finishes both with the seed). Word i of the frame is the little-endian 32-bit word at
// byte 4i, its bytes past the frame's length taken as zero;
//   x_i = fmix32(word_i ^ (i * 0x9E3779B9) ^ seed),  lo = sum of x_i,  hi = sum of x_i * (2i + 1)
// all mod 2^32. Sums do not depend on the order they are added in, so each invocation adds a strided
// share, the workgroup adds those, and one atomic add per workgroup puts its part into sums[0..1]
// (which the caller zeroes first).
//   glslangValidator -V --target-env vulkan1.1 -o /tmp/frame-checksum.spv Sources/FrameStream/Shaders/frame-checksum.comp
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer Ring { uint words[]; } ring;
layout(std430, set = 0, binding = 1) buffer Sums { uint sums[]; } result;
layout(push_constant) uniform Parameters {
    uint firstWord;  // the frame's slot offset in the ring / 4
    uint bytes;      // bytes of the frame
    uint seed;
} p;

shared uint sharedLo[256];
shared uint sharedHi[256];

uint fmix32(uint h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

void main() {
    uint count = (p.bytes + 3u) / 4u;
    uint stride = gl_NumWorkGroups.x * 256u;
    uint lo = 0u;
    uint hi = 0u;
    for (uint i = gl_GlobalInvocationID.x; i < count; i += stride) {
        uint w = ring.words[p.firstWord + i];
        uint left = p.bytes - i * 4u;
        if (left < 4u) w &= (1u << (left * 8u)) - 1u;
        uint x = fmix32(w ^ (i * 0x9E3779B9u) ^ p.seed);
        lo += x;
        hi += x * (2u * i + 1u);
    }
    uint id = gl_LocalInvocationID.x;
    sharedLo[id] = lo;
    sharedHi[id] = hi;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1) {
        if (id < s) {
            sharedLo[id] += sharedLo[id + s];
            sharedHi[id] += sharedHi[id + s];
        }
        barrier();
    }
    if (id == 0u) {
        atomicAdd(result.sums[0], sharedLo[0]);
        atomicAdd(result.sums[1], sharedHi[0]);
    }
}
