// Residuals of a tensor against a base tensor of the same dtype and size, and
// their inverse (docs/format.md, "Bases"). Both are integer operations on the raw
// bits, so every bit pattern (NaN payloads included) comes back exactly.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tensorzip {

enum class DeltaMode : int { kXor = 0, kSub = 1 };

// out = residual(a against base); n elements of `width` bytes (1, 2, 4, 8).
// `is_float`: elements are sign-magnitude floats, mapped to ordered integers
// before subtracting (kSub only). `out` may alias `a`.
void delta_residual(const uint8_t* a, const uint8_t* base, uint8_t* out, size_t n, int width, DeltaMode mode,
                    bool is_float, int threads);

// In place: stored (a residual) becomes the original tensor.
void delta_restore(uint8_t* stored, const uint8_t* base, size_t n, int width, DeltaMode mode, bool is_float,
                   int threads);

}  // namespace tensorzip
