// Splitting fixed-width elements into byte planes and merging them back.
//
// An element of `width` bytes (1, 2, 4 or 8; little-endian) is first rotated
// left by `rotate` bits within its width (except 1-byte elements: rotating a
// lone byte changes nothing a byte-wise model can see), then plane 0 receives its
// most significant byte, plane 1 the next, and so on. With rotate = 1 a float's sign
// moves to the lowest bit and its exponent to the top: the exponent of bf16 and
// fp32 then fills plane 0 exactly, which is where the redundancy of trained
// weights lives (see docs/architecture.md for the measured choice).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tensorzip {

void check_layout(int width, int rotate);

// planes[k] must point to `count` writable bytes for each k < width.
void split_planes(const uint8_t* elements, size_t count, int width, int rotate, uint8_t* const* planes);

// Inverse of split_planes; writes count * width bytes.
void merge_planes(const uint8_t* const* planes, size_t count, int width, int rotate, uint8_t* elements);

}  // namespace tensorzip
