#include "api/rest/progress_stream.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/log.h"

namespace kiln::api::rest {
namespace {

using Clock = std::chrono::steady_clock;
// Byte counters move with every buffer a download reads: a client needs a few updates a second, not that.
constexpr auto kTransferUpdateInterval = std::chrono::milliseconds(100);
constexpr auto kClientCheckInterval = std::chrono::milliseconds(200);

// What the job's thread hands the connection's thread.
struct JobQueue {
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::string> lines;
  bool finished = false;
  std::optional<Error> error;
  Json aux;
  std::atomic<bool> cancelled = false;  // the client went away: the job may stop early
};

class QueueListener final : public image::ProgressListener {
 public:
  explicit QueueListener(std::shared_ptr<JobQueue> queue) : queue_(std::move(queue)) {}

  void on_progress(const image::ProgressEvent& event) override {
    bool transfer =
        event.state == image::ProgressState::kDownloading || event.state == image::ProgressState::kUploading;
    std::lock_guard lock(queue_->mutex);
    auto now = Clock::now();
    auto& last = last_update_[event.id];
    bool complete = event.total > 0 && event.current >= event.total;
    if (transfer && last.state == event.state && !complete && now - last.at < kTransferUpdateInterval) return;
    last = {event.state, now};
    push_locked(progress_event_json(event).dump());
  }

  void on_message(std::string_view text) override {
    std::lock_guard lock(queue_->mutex);
    push_locked(progress_message_json(text).dump());
  }

  bool cancelled() const override { return queue_->cancelled; }

 private:
  struct LastUpdate {
    image::ProgressState state = image::ProgressState::kWaiting;
    Clock::time_point at{};
  };
  void push_locked(std::string line) {
    queue_->lines.push_back(std::move(line) + "\n");
    queue_->changed.notify_all();
  }

  std::shared_ptr<JobQueue> queue_;
  std::map<std::string, LastUpdate> last_update_;  // guarded by queue_->mutex
};

// Owns the job's thread; only the connection's side holds it, so the join never happens on the job's own
// thread. Joined when the reply (and with it this) is destroyed, whether or not the stream ever ran.
class JobThread {
 public:
  explicit JobThread(std::thread thread) : thread_(std::move(thread)) {}
  JobThread(const JobThread&) = delete;
  JobThread& operator=(const JobThread&) = delete;
  ~JobThread() { join(); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::thread thread_;
};

Json error_line(const Error& error) {
  return {{"errorDetail", {{"message", error.message()}}}, {"error", error.message()}};
}

}  // namespace

Json progress_event_json(const image::ProgressEvent& event) {
  Json line = {{"status", image::to_string(event.state)}, {"id", event.id}};
  if (event.total > 0 || event.current > 0)
    line["progressDetail"] = {{"current", event.current}, {"total", event.total}};
  else
    line["progressDetail"] = Json::object();
  return line;
}

Json progress_message_json(std::string_view text) {
  return {{"status", text}};
}

Result<http::Reply> progress_stream(ProgressJob job) {
  auto queue = std::make_shared<JobQueue>();
  auto thread = std::make_shared<JobThread>(std::thread([queue, job = std::move(job)] {
    QueueListener listener(queue);
    Result<Json> result = [&]() -> Result<Json> {
      try {
        return job(listener);
      } catch (const std::exception& e) {
        return Error::internal(fmt::format("image operation failed: {}", e.what()));
      }
    }();
    std::lock_guard lock(queue->mutex);
    queue->finished = true;
    if (result) {
      queue->aux = std::move(*result);
    } else {
      queue->error = result.error();
    }
    queue->changed.notify_all();
  }));

  {
    std::unique_lock lock(queue->mutex);
    queue->changed.wait(lock, [&] { return queue->finished || !queue->lines.empty(); });
    if (queue->finished && queue->lines.empty() && queue->error) {
      Error error = *queue->error;
      lock.unlock();
      thread->join();
      return error;
    }
  }

  http::StreamReply reply;
  reply.headers.set("Content-Type", "application/json");
  reply.body = [queue, thread](http::ChunkWriter& writer) {
    bool client_here = true;
    std::unique_lock lock(queue->mutex);
    for (;;) {
      // Wake now and then to notice a client that left while the job is quiet (a long layer download).
      while (!queue->changed.wait_for(lock, kClientCheckInterval,
                                      [&] { return queue->finished || !queue->lines.empty(); })) {
        if (client_here && writer.client_gone()) client_here = false;
        if (!client_here) queue->cancelled = true;
      }
      std::deque<std::string> batch;
      batch.swap(queue->lines);
      bool finished = queue->finished;
      lock.unlock();
      std::string text;
      for (std::string& line : batch) text += line;
      // A client that left stops getting lines, but the job runs to its end (see the header).
      if (client_here && !text.empty()) client_here = static_cast<bool>(writer.write_chunk(text));
      if (!client_here) queue->cancelled = true;
      lock.lock();
      if (finished && queue->lines.empty()) break;
    }
    std::string last;
    if (queue->error) {
      last = error_line(*queue->error).dump() + "\n";
    } else if (!queue->aux.is_null()) {
      last = Json{{"aux", queue->aux}}.dump() + "\n";
    }
    bool cancelled = queue->cancelled;
    lock.unlock();
    if (client_here && !last.empty()) (void)writer.write_chunk(last);
    thread->join();
    if (cancelled) log::info("image operation ended early: its client went away");
  };
  return http::Reply(std::move(reply));
}

}  // namespace kiln::api::rest
