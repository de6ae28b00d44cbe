#version 450
// Writes word i = seed ^ (i * 2654435761) for i < count: a pattern no fill can fake.
// Compiled into Sources/VulkanMemory/PatternShader.swift by:
//   glslangValidator -V --target-env vulkan1.1 -o pattern.spv pattern.comp
// then the words dumped as a Swift array (see the comment there).
layout(local_size_x = 64) in;
layout(set = 0, binding = 0) buffer Words { uint words[]; };
layout(push_constant) uniform Parameters { uint count; uint seed; };

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < count) {
        words[i] = seed ^ (i * 2654435761u);
    }
}
