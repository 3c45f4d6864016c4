// A grow-only buffer whose contents start undefined, for scratch space a kernel
// fully writes before it reads.
//
// Why not std::vector: resize zero-fills, and a one-call decode of a 256 KiB tensor
// spent more time zeroing fresh scratch (256 KiB of decoder tables) than decoding.
#pragma once

#include <cstddef>
#include <memory>

namespace tensorzip {

template <typename T>
class ScratchBuffer {
 public:
  // At least `count` elements (their values undefined); earlier contents are lost on growth.
  T* reserve(std::size_t count) {
    if (count > capacity_) {
      data_.reset(new T[count]);  // default-initialized: no fill
      capacity_ = count;
    }
    return data_.get();
  }
  T* data() const { return data_.get(); }
  std::size_t capacity_bytes() const { return capacity_ * sizeof(T); }
  void release() {
    data_.reset();
    capacity_ = 0;
  }

 private:
  std::unique_ptr<T[]> data_;
  std::size_t capacity_ = 0;
};

}  // namespace tensorzip
