#pragma once
// Advice to the OS about memory a decoder is about to fill for the first time.
#include <cstddef>

namespace tensorzip {

// Ask for transparent huge pages on the whole 2 MiB pages inside [data, data + length).
// Why: on virtual machines the first touch of a 4 KiB page is expensive (1.5 GB/s
// measured on the benchmark VM, against 3-4 GB/s with huge pages), and a decoder
// writes every byte of its output exactly once. Only advice: no effect on contents,
// pages already present stay as they are, and it is a no-op where the OS lacks it.
void advise_huge_pages(void* data, std::size_t length) noexcept;

// Outputs at least this long get the advice (smaller ones span too few huge pages to matter).
constexpr std::size_t kHugePageAdviceMinimum = std::size_t{4} << 20;

}  // namespace tensorzip
