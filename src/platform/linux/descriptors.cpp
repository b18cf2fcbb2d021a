// Descriptors, wake-ups and polling on Linux: eventfd, futex, epoll, pipes.
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>

#include "platform/linux/syscall.hpp"
#include "platform/platform.hpp"

namespace procpool::platform {

using detail::keep_off_stdio;
using detail::retry_on_eintr;
using detail::throw_errno;

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

void UniqueFd::reset() noexcept {
  if (fd_ >= 0) {
    // close() must not be retried on EINTR on Linux: the descriptor is gone either way.
    ::close(fd_);
    fd_ = -1;
  }
}

UniqueFd make_eventfd() {
  int fd = keep_off_stdio(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (fd < 0) throw_errno("eventfd");
  return UniqueFd(fd);
}

void eventfd_notify(int fd) noexcept {
  std::uint64_t one = 1;
  // EAGAIN means the counter is saturated: the reader is already due to wake.
  [[maybe_unused]] auto n = retry_on_eintr([&] { return ::write(fd, &one, sizeof one); });
}

void eventfd_drain(int fd) noexcept {
  std::uint64_t value = 0;
  [[maybe_unused]] auto n = retry_on_eintr([&] { return ::read(fd, &value, sizeof value); });
}

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));

namespace {
int futex_op(int op, FutexScope scope) noexcept {
  return scope == FutexScope::process_private ? op | FUTEX_PRIVATE_FLAG : op;
}
}  // namespace

void futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                std::optional<std::chrono::nanoseconds> timeout, FutexScope scope) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout) {
    auto ns = timeout->count() < 0 ? 0 : timeout->count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    tsp = &ts;
  }
  // EINTR, EAGAIN (value changed) and ETIMEDOUT all mean "re-check", which every caller does.
  ::syscall(SYS_futex, const_cast<std::atomic<std::uint32_t>*>(&word), futex_op(FUTEX_WAIT, scope),
            expected, tsp, nullptr, 0);
}

void futex_wake_all(std::atomic<std::uint32_t>& word, FutexScope scope) noexcept {
  ::syscall(SYS_futex, &word, futex_op(FUTEX_WAKE, scope), INT_MAX, nullptr, nullptr, 0);
}

Poller::Poller() : epoll_(keep_off_stdio(::epoll_create1(EPOLL_CLOEXEC))) {
  if (!epoll_) throw_errno("epoll_create1");
}

void Poller::add(int fd, std::uint64_t key, bool edge_triggered) {
  epoll_event event{};
  event.events = EPOLLIN | (edge_triggered ? EPOLLET : 0u);
  event.data.u64 = key;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) throw_errno("epoll_ctl(ADD)");
}

void Poller::remove(int fd) noexcept {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void Poller::wait(std::optional<std::chrono::nanoseconds> timeout,
                  std::vector<std::uint64_t>& ready) {
  epoll_event events[64];
  int n = -1;
  bool below_a_millisecond = timeout && *timeout < std::chrono::milliseconds(1);
  if (below_a_millisecond) {
    // epoll_wait cannot express it; epoll_pwait2 (Linux 5.11) takes a timespec. Called directly,
    // so that a glibc older than 2.35 (no wrapper) still builds; without it, or on an older
    // kernel (ENOSYS), the wait rounds up to a millisecond.
    errno = ENOSYS;
#ifdef SYS_epoll_pwait2
    timespec ts{0, std::max<long>(0, static_cast<long>(timeout->count()))};
    n = static_cast<int>(::syscall(SYS_epoll_pwait2, epoll_.get(), events, 64, &ts, nullptr, 0));
#endif
    if (n < 0 && errno == ENOSYS) {
      below_a_millisecond = false;
      timeout = std::chrono::milliseconds(1);
    }
  }
  if (!below_a_millisecond) {
    int timeout_ms = -1;
    if (timeout) {
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(*timeout).count();
      timeout_ms = ms < 0 ? 0 : (ms > INT_MAX ? INT_MAX : static_cast<int>(ms));
    }
    n = ::epoll_wait(epoll_.get(), events, 64, timeout_ms);
  }
  if (n < 0) {
    if (errno == EINTR) return;
    throw_errno("epoll_wait");
  }
  for (int i = 0; i < n; ++i)
    ready.push_back(events[i].data.u64);
}

namespace {

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) throw_errno("fcntl(O_NONBLOCK)");
}

}  // namespace

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno("pipe2");
  Pipe pipe{UniqueFd(keep_off_stdio(fds[0])), UniqueFd(keep_off_stdio(fds[1]))};
  if (!pipe.read_end || !pipe.write_end) throw_errno("fcntl(pipe, F_DUPFD_CLOEXEC)");
  set_nonblocking(pipe.read_end.get());
  return pipe;
}

std::optional<std::size_t> read_some(int fd, void* buffer, std::size_t size) noexcept {
  auto n = retry_on_eintr([&] { return ::read(fd, buffer, size); });
  if (n < 0) return std::nullopt;
  return static_cast<std::size_t>(n);
}

DescriptorChannel make_descriptor_channel() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    throw_errno("socketpair(AF_UNIX, SOCK_SEQPACKET)");
  }
  DescriptorChannel channel{UniqueFd(keep_off_stdio(fds[0])), UniqueFd(keep_off_stdio(fds[1]))};
  if (!channel.host_end || !channel.worker_end) throw_errno("fcntl(socket, F_DUPFD_CLOEXEC)");
  set_nonblocking(channel.host_end.get());
  return channel;
}

namespace {

// Room for the control message of up to this many descriptors.
constexpr std::size_t max_passed_descriptors = 5;

// One message of the channel: a byte of data (a message must carry at least one) and room for the
// descriptors. Points into itself: neither copied nor moved.
struct DescriptorMessage {
  explicit DescriptorMessage(std::size_t control_bytes) noexcept {
    header.msg_iov = &data;
    header.msg_iovlen = 1;
    header.msg_control = control;
    header.msg_controllen = control_bytes;
  }
  DescriptorMessage(const DescriptorMessage&) = delete;
  DescriptorMessage& operator=(const DescriptorMessage&) = delete;

  char byte = 'd';
  iovec data{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_passed_descriptors)] = {};
  msghdr header{};
};

}  // namespace

bool send_descriptors(int socket, const int* fds, std::size_t count) noexcept {
  if (count == 0 || count > max_passed_descriptors) return false;
  DescriptorMessage sent(CMSG_SPACE(sizeof(int) * count));
  msghdr& message = sent.header;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int) * count);
  std::memcpy(CMSG_DATA(header), fds, sizeof(int) * count);
  auto n = retry_on_eintr([&] { return ::sendmsg(socket, &message, MSG_DONTWAIT | MSG_NOSIGNAL); });
  return n == 1;
}

std::vector<UniqueFd> receive_descriptors(int socket, std::size_t max) {
  DescriptorMessage incoming(CMSG_SPACE(sizeof(int) * max_passed_descriptors));
  msghdr& message = incoming.header;
  std::vector<UniqueFd> fds;
  auto n = retry_on_eintr([&] { return ::recvmsg(socket, &message, MSG_CMSG_CLOEXEC); });
  if (n <= 0) return fds;
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    std::size_t received = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < received; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);  // owned (and closed) even when over `max`
    }
  }
  if (fds.size() > max) fds.clear();
  return fds;
}

bool send_value(int socket, std::int32_t value) noexcept {
  auto n = retry_on_eintr(
      [&] { return ::send(socket, &value, sizeof value, MSG_DONTWAIT | MSG_NOSIGNAL); });
  return n == static_cast<ssize_t>(sizeof value);
}

Received try_receive_value(int socket, std::int32_t& value) noexcept {
  auto n = retry_on_eintr([&] { return ::recv(socket, &value, sizeof value, MSG_DONTWAIT); });
  if (n == static_cast<ssize_t>(sizeof value)) return Received::value;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Received::nothing_yet;
  return Received::closed;
}

UniqueFd reopen_read_only(int fd) {
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  UniqueFd reopened(keep_off_stdio(::open(path.c_str(), O_RDONLY | O_CLOEXEC)));
  if (!reopened) throw_errno("open(" + path + ", O_RDONLY)");
  return reopened;
}

void shutdown_sending(int socket) noexcept {
  ::shutdown(socket, SHUT_WR);
}

bool wait_for_exit(int pidfd, std::chrono::milliseconds timeout) noexcept {
  pollfd exited{pidfd, POLLIN, 0};
  return retry_on_eintr([&] { return ::poll(&exited, 1, static_cast<int>(timeout.count())); }) > 0;
}

void set_cloexec(int fd) noexcept {
  int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0) ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

}  // namespace procpool::platform
