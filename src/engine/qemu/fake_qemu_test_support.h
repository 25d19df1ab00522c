// FakeQemu: a scripted QEMU monitor for unit tests of QMP users. It greets, then answers each request line
// it reads with the next scripted reply ("<close>" closes the connection instead), or with what a responder
// function makes of the request, and keeps the requests. Test-only; its own thread, joined by the
// destructor (with a responder: once the client closes its end); read requests() after that.
#pragma once

#include <unistd.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"

namespace kiln::engine::qemu {

class FakeQemu {
 public:
  FakeQemu(UniqueFd fd, std::vector<std::string> replies) : fd_(std::move(fd)) {
    thread_ = std::thread([this, replies = std::move(replies)] {
      greet();
      for (const auto& reply : replies) {
        if (!next_request()) return;
        if (reply == "<close>") {
          fd_.reset();
          return;
        }
        (void)write_all(fd_.get(), reply + "\r\n");
      }
    });
  }
  FakeQemu(UniqueFd fd, std::function<std::string(const std::string& request)> responder)
      : fd_(std::move(fd)) {
    thread_ = std::thread([this, responder = std::move(responder)] {
      greet();
      while (next_request()) (void)write_all(fd_.get(), responder(requests_.back()) + "\r\n");
    });
  }
  ~FakeQemu() { join(); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  const std::vector<std::string>& requests() const { return requests_; }

 private:
  void greet() {
    (void)write_all(fd_.get(), R"({"QMP": {"version": {}, "capabilities": []}})"
                               "\r\n");
  }
  // Waits for a full request line and keeps it; false once the client is gone.
  bool next_request() {
    while (pending_.find('\n') == std::string::npos) {
      char buffer[4096];
      ssize_t n = ::read(fd_.get(), buffer, sizeof buffer);
      if (n <= 0) return false;
      pending_.append(buffer, static_cast<size_t>(n));
    }
    requests_.push_back(pending_.substr(0, pending_.find('\n')));
    pending_.erase(0, pending_.find('\n') + 1);
    return true;
  }

  UniqueFd fd_;
  std::string pending_;
  std::thread thread_;
  std::vector<std::string> requests_;
};

}  // namespace kiln::engine::qemu
