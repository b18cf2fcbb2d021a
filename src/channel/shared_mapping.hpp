// SharedMapping: a shared-memory object open on a descriptor, mapped into this process. Boost.
// Interprocess does the mapping (it creates only named objects itself; procpool's are memfds);
// nothing of it leaks past here.
#pragma once

#include <cstddef>
#include <memory>

namespace procpool::detail {

class SharedMapping {
 public:
  enum class Access { read_only, read_write };

  SharedMapping() noexcept;
  SharedMapping(SharedMapping&&) noexcept;
  SharedMapping& operator=(SharedMapping&&) noexcept;
  ~SharedMapping();  // unmaps

  /// Maps `bytes` of the object open on `fd` (0: all of it). `populate`: fault every page in now,
  /// in one go, rather than one by one on first touch. The descriptor may be closed afterwards.
  /// Throws std::runtime_error naming the cause.
  static SharedMapping map(int fd, std::size_t bytes, Access access, bool populate = false);

  std::byte* data() const noexcept;
  std::size_t size() const noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace procpool::detail
