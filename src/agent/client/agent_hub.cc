#include "agent/client/agent_hub.h"

#include <poll.h>
#include <pthread.h>

#include <cerrno>
#include <map>
#include <vector>

#include "agent/client/exec_session.h"
#include "agent/client/hub_mailbox.h"
#include "common/log.h"

namespace kiln::agent {

namespace {

// A RUN is answered as soon as the agent forked; this only bounds a wedged agent.
constexpr auto kStartTimeout = std::chrono::seconds(30);

Error lost_connection() {
  return Error::unavailable("lost connection to the VM's agent");
}

}  // namespace

namespace detail {

// The hub thread's state and loop. Everything here is touched by the hub thread only; other threads reach
// it through HubMailbox tasks, which run on the hub thread.
class HubLoop {
 public:
  HubLoop(std::unique_ptr<AgentConnection> connection, std::shared_ptr<HubMailbox> mailbox,
          AgentHub::LostCallback on_lost)
      : connection_(std::move(connection)), mailbox_(std::move(mailbox)), on_lost_(std::move(on_lost)) {}

  // Until the channel dies or the hub stops; then ends every session and closes the mailbox.
  void run();

  AgentConnection& connection() { return *connection_; }
  Result<ExecHandle> exec(const ProcessSpec& spec, ExecIo& io);
  Result<ExecHandle> reattach(ProcessId id, bool tty, const ReattachRequest& request, ExecIo& io);
  Result<void> signal(ProcessId id, int signum);
  Result<void> resize(ProcessId id, TtySize size);

 private:
  void advance_sessions();
  void run_tasks();
  // Dispatches what the agent sent and notices a connection that broke during a blocking helper (which
  // keeps the channel fd readable only for a closed channel, not for a protocol error).
  bool check_connection();
  void lose(const Error& why);
  void shut_down();

  std::unique_ptr<AgentConnection> connection_;
  std::shared_ptr<HubMailbox> mailbox_;
  AgentHub::LostCallback on_lost_;
  std::map<ProcessId, std::unique_ptr<ExecSession>> sessions_;
  std::optional<Error> lost_;
};

void HubLoop::run() {
  mailbox_->bind_to_current_thread();
  pthread_setname_np(pthread_self(), "kiln-agent-hub");  // for top -H and gdb; failure is harmless
  std::vector<pollfd> fds;
  std::vector<ExecSession*> polled;
  while (!lost_ && !mailbox_->stop_requested()) {
    // Every turn, because any call on the connection (a task's blocking helper included) may have
    // dispatched output, credit or an EXIT for any session.
    advance_sessions();
    if (lost_) break;

    enum { kMailbox, kChannel, kFirstSession };
    fds.assign({{mailbox_->wake_fd(), POLLIN, 0}, {connection_->fd(), connection_->poll_events(), 0}});
    polled.clear();
    for (auto& [id, session] : sessions_) {
      if (session->client_fd() < 0) continue;
      fds.push_back({session->client_fd(), session->poll_events(), 0});
      polled.push_back(session.get());
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      lose(Error::last_os_error("agent hub: poll"));
      break;
    }
    if (fds[kChannel].revents) {
      if (auto ready = connection_->on_ready(fds[kChannel].revents); !ready) {
        lose(ready.error());
        break;
      }
    }
    for (size_t i = 0; i < polled.size(); ++i) {
      if (short revents = fds[kFirstSession + i].revents) polled[i]->on_client_ready(revents);
    }
    if (fds[kMailbox].revents) run_tasks();
  }
  shut_down();
}

void HubLoop::advance_sessions() {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    ExecSession& session = *it->second;
    if (auto advanced = session.advance(); !advanced) {
      if (!check_connection()) return;
      session.abandon(advanced.error());  // the connection is fine: an error about this process only
    }
    it = session.finished() ? sessions_.erase(it) : std::next(it);
  }
}

void HubLoop::run_tasks() {
  auto tasks = mailbox_->take();
  for (HubMailbox::Task* task : tasks) {
    if (lost_) {
      mailbox_->drop(task, *lost_);
      continue;
    }
    task->work(*this);
    mailbox_->complete(task);
    check_connection();
  }
}

bool HubLoop::check_connection() {
  if (lost_) return false;
  if (auto pumped = connection_->pump(std::chrono::milliseconds(0)); !pumped) {
    lose(pumped.error());
    return false;
  }
  return true;
}

void HubLoop::lose(const Error& why) {
  if (!lost_) lost_ = why;
}

void HubLoop::shut_down() {
  Error why = lost_ ? *lost_ : lost_connection();
  if (lost_) log::warn("lost the VM's agent", {{"error", why.message()}});
  for (auto& [id, session] : sessions_) session->abandon(why);
  sessions_.clear();
  mailbox_->close(why);
  if (lost_ && on_lost_) on_lost_(why);
}

Result<ExecHandle> HubLoop::exec(const ProcessSpec& spec, ExecIo& io) {
  KILN_TRY(ExecSession::validate(spec, io));
  ProcessId id = KILN_TRY(connection_->start_process(spec, kStartTimeout));
  auto state = std::make_shared<ExecState>();
  sessions_.emplace(id, ExecSession::create(*connection_, id, std::move(io), state));
  return ExecHandle(id, std::move(state), mailbox_);
}

Result<ExecHandle> HubLoop::reattach(ProcessId id, bool tty, const ReattachRequest& request, ExecIo& io) {
  KILN_TRY(ExecSession::validate({.argv = {"(kept)"}, .tty = tty}, io));
  KILN_TRY(connection_->reattach_process(id, request, kStartTimeout));
  auto state = std::make_shared<ExecState>();
  sessions_.emplace(id, ExecSession::create(*connection_, id, std::move(io), state));
  return ExecHandle(id, std::move(state), mailbox_);
}

Result<void> HubLoop::signal(ProcessId id, int signum) {
  // A session already gone has exited (or was abandoned): signalling it is a no-op, as for AgentConnection.
  if (!sessions_.contains(id)) return ok();
  return connection_->send_signal(id, signum);
}

Result<void> HubLoop::resize(ProcessId id, TtySize size) {
  if (!sessions_.contains(id)) return ok();
  return connection_->resize(id, size);
}

}  // namespace detail

// --- ExecHandle ---

Result<ExitStatus> ExecHandle::wait() const {
  return state_->wait(std::nullopt);
}

Result<ExitStatus> ExecHandle::wait(std::chrono::milliseconds timeout) const {
  return state_->wait(timeout);
}

std::optional<ExitStatus> ExecHandle::exit_status() const {
  return state_->exit_status();
}

Result<void> ExecHandle::signal(int signum) const {
  if (state_->exit_status()) return ok();  // as AgentConnection: signalling an exited process is a no-op
  Result<void> signalled = ok();
  KILN_TRY(mailbox_->post([&](detail::HubLoop& loop) { signalled = loop.signal(id_, signum); }));
  return signalled;
}

Result<void> ExecHandle::resize(TtySize size) const {
  if (state_->exit_status()) return ok();
  Result<void> resized = ok();
  KILN_TRY(mailbox_->post([&](detail::HubLoop& loop) { resized = loop.resize(id_, size); }));
  return resized;
}

// --- AgentHub ---

Result<std::unique_ptr<AgentHub>> AgentHub::start(UniqueFd channel, std::chrono::milliseconds hello_timeout,
                                                  LostCallback on_lost) {
  auto mailbox = KILN_TRY(detail::HubMailbox::create());
  auto connection = KILN_TRY(AgentConnection::connect(std::move(channel), hello_timeout));
  std::unique_ptr<AgentHub> hub(new AgentHub());
  hub->mailbox_ = std::move(mailbox);
  hub->loop_ = std::make_unique<detail::HubLoop>(std::move(connection), hub->mailbox_, std::move(on_lost));
  hub->thread_ = std::thread([loop = hub->loop_.get()] { loop->run(); });
  return hub;
}

AgentHub::~AgentHub() {
  if (!thread_.joinable()) return;
  mailbox_->request_stop();
  thread_.join();
}

bool AgentHub::alive() const {
  return !mailbox_->closed().has_value();
}

Result<void> AgentHub::run_on_hub(std::function<void(AgentConnection&)> work) {
  return mailbox_->post([&work](detail::HubLoop& loop) { work(loop.connection()); });
}

Result<ExecHandle> AgentHub::exec(const ProcessSpec& spec, ExecIo&& io) {
  std::optional<Result<ExecHandle>> started;
  KILN_TRY(mailbox_->post([&](detail::HubLoop& loop) { started.emplace(loop.exec(spec, io)); }));
  return std::move(*started);
}

Result<ExecHandle> AgentHub::reattach(ProcessId id, bool tty, const ReattachRequest& request, ExecIo&& io) {
  std::optional<Result<ExecHandle>> taken;
  KILN_TRY(
      mailbox_->post([&](detail::HubLoop& loop) { taken.emplace(loop.reattach(id, tty, request, io)); }));
  return std::move(*taken);
}

Result<void> AgentHub::ping(std::chrono::milliseconds timeout) {
  return call([timeout](AgentConnection& connection) { return connection.ping(timeout); });
}

Result<void> AgentHub::shutdown(bool reboot, std::chrono::milliseconds timeout) {
  return call(
      [reboot, timeout](AgentConnection& connection) { return connection.shutdown(reboot, timeout); });
}

}  // namespace kiln::agent
