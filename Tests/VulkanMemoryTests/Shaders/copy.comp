#version 450
// Copies count 16-byte words from binding 0 to binding 1, each invocation a strided share.
layout(local_size_x = 256) in;
layout(std430, set = 0, binding = 0) readonly buffer Source { uvec4 source[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Destination { uvec4 destination[]; };
layout(push_constant) uniform Parameters { uint count; } parameters;
void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < parameters.count; i += stride) {
        destination[i] = source[i];
    }
}
