#pragma once
// Advice to the OS about file data a writer has just handed it.
#include <cstdint>

namespace tensorzip {

// Start writing [offset, offset + length) of the open file fd to its device, without
// waiting. Why: a durable output ends in fsync, which otherwise finds every byte of the
// file still dirty and waits for all of it after the last write; started per batch, the
// device writes while later batches decode and fsync waits only for the tail. Only
// advice: contents and error reporting are unchanged (fsync still reports any failure),
// and it is a no-op where the OS lacks sync_file_range or the file system ignores it.
void start_writeback(int fd, std::int64_t offset, std::int64_t length) noexcept;

}  // namespace tensorzip
