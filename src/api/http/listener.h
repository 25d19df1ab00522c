// Listener: one bound, listening socket for an Endpoint. Unix listeners create the parent directory,
// replace a stale socket file but refuse a live one, chmod the socket 0660, and unlink it when destroyed
// (only if the file is still theirs). Move-only; owned by the Server; any one thread.
#pragma once

#include <sys/types.h>

#include "api/http/endpoint.h"
#include "common/error.h"
#include "common/unique_fd.h"

namespace kiln::api::http {

class Listener {
 public:
  // kAlreadyExists when another server answers on the unix socket; the returned endpoint() carries the
  // actual port when `endpoint` asked for port 0.
  static Result<Listener> bind(const Endpoint& endpoint, int backlog = 128);

  Listener(Listener&&) = default;
  Listener& operator=(Listener&&) = default;
  ~Listener();

  int fd() const { return fd_.get(); }
  const Endpoint& endpoint() const { return endpoint_; }

 private:
  Listener(UniqueFd fd, Endpoint endpoint, ino_t inode)
      : fd_(std::move(fd)), endpoint_(std::move(endpoint)), inode_(inode) {}

  UniqueFd fd_;
  Endpoint endpoint_;
  ino_t inode_ = 0;  // of our unix socket file, so we never unlink a successor's
};

}  // namespace kiln::api::http
