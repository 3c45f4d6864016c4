#include "file_writeback.hpp"

#if defined(__linux__)
#include <fcntl.h>
#endif

namespace tensorzip {

void start_writeback(int fd, std::int64_t offset, std::int64_t length) noexcept {
#if defined(__linux__)
  if (fd < 0 || offset < 0 || length <= 0) return;
  // Errors are left to fsync, which reports them for the same pages.
  (void)sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE);
#else
  (void)fd;
  (void)offset;
  (void)length;
#endif
}

}  // namespace tensorzip
