#include "daemon/containers/json_file_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/temp_dir.h"
#include "common/unique_fd.h"

namespace kiln::daemon::containers {
namespace {

using Clock = std::chrono::system_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

const Clock::time_point kT0 = Clock::from_time_t(1700000000);  // 2023-11-14T22:13:20Z

struct Line {
  std::string log;
  std::string stream;
  std::string time;
  bool operator==(const Line&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Line& line) {
  return out << line.stream << " " << line.time << " " << Json(line.log).dump();
}

// The file as JSON lines, checked to be valid JSON with exactly dockerd's three keys.
std::vector<Line> file_lines(const std::string& path) {
  std::string text = *read_file(path);
  std::vector<Line> lines;
  size_t start = 0;
  for (size_t end = text.find('\n'); end != std::string::npos; end = text.find('\n', start)) {
    auto json = parse_json(std::string_view(text).substr(start, end - start));
    EXPECT_TRUE(json) << text.substr(start, end - start);
    if (!json) break;
    EXPECT_EQ(json->size(), 3u);
    lines.push_back({json->at("log").get<std::string>(), json->at("stream").get<std::string>(),
                     json->at("time").get<std::string>()});
    start = end + 1;
  }
  EXPECT_EQ(start, text.size()) << "the file ends with a complete line";
  return lines;
}

std::vector<std::string> read_texts(const std::string& path, const LogReadOptions& options = {}) {
  std::vector<std::string> texts;
  auto result = read_json_file_log(path, options, nullptr, nullptr, [&](const LogEntry& entry) {
    texts.push_back(entry.text);
    return true;
  });
  EXPECT_TRUE(result) << result.error().message();
  return texts;
}

class JsonFileLogTest : public ::testing::Test {
 protected:
  std::unique_ptr<JsonFileLogWriter> make_writer(JsonFileLogOptions options = {}) {
    auto writer = JsonFileLogWriter::create(path_, options);
    EXPECT_TRUE(writer) << writer.error().message();
    return std::move(*writer);
  }
  // One entry per call, each a second after the last.
  void write_lines(JsonFileLogWriter& writer, int count, int first = 1) {
    for (int i = first; i < first + count; ++i) {
      ASSERT_TRUE(writer.write(LogStream::kStdout, std::to_string(i) + "\n", kT0 + seconds(i)));
    }
  }

  TempDir dir_ = *TempDir::create("kiln-json-log-");
  std::string path_ = dir_.path() + "/abc-json.log";
};

TEST_F(JsonFileLogTest, LinesAreSplitAcrossChunksAndStampedWhenTheyEnd) {
  auto writer = make_writer();
  ASSERT_TRUE(writer->write(LogStream::kStdout, "hel", kT0));
  ASSERT_TRUE(writer->write(LogStream::kStdout, "lo\nwor", kT0 + milliseconds(120)));
  ASSERT_TRUE(
      writer->write(LogStream::kStdout, "ld\n\nlast", kT0 + seconds(1) + std::chrono::nanoseconds(5)));
  EXPECT_EQ(file_lines(path_), (std::vector<Line>{
                                   {"hello\n", "stdout", "2023-11-14T22:13:20.12Z"},
                                   {"world\n", "stdout", "2023-11-14T22:13:21.000000005Z"},
                                   {"\n", "stdout", "2023-11-14T22:13:21.000000005Z"},
                               }));
}

TEST_F(JsonFileLogTest, CloseWritesTheUnfinishedLineWithoutNewlineAndRefusesMore) {
  auto writer = make_writer();
  ASSERT_TRUE(writer->write(LogStream::kStderr, "no newline", kT0));
  ASSERT_TRUE(writer->close());
  ASSERT_TRUE(writer->close());  // idempotent
  auto lines = file_lines(path_);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].log, "no newline");
  EXPECT_EQ(lines[0].stream, "stderr");
  auto refused = writer->write(LogStream::kStdout, "late\n", kT0);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().category(), ErrorCategory::kFailedPrecondition);
}

TEST_F(JsonFileLogTest, LongLinesAreCutInto16KiBPiecesSharingTheFirstPiecesTime) {
  constexpr size_t kMax = JsonFileLogWriter::kMaxLineBytes;
  auto writer = make_writer();
  std::string line(2 * kMax + 10, 'x');
  line[kMax] = 'y';  // the second piece starts here
  line += "\n";
  for (size_t at = 0, chunk = 0; at < line.size(); at += 1000, ++chunk) {
    ASSERT_TRUE(writer->write(LogStream::kStdout, line.substr(at, 1000), kT0 + seconds(chunk)));
  }
  // Exactly 16 KiB before the '\n': the '\n' does not fit the buffer and becomes an entry of its own.
  ASSERT_TRUE(writer->write(LogStream::kStdout, std::string(kMax, 'z') + "\n", kT0 + seconds(100)));
  auto lines = file_lines(path_);
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].log, std::string(kMax, 'x'));
  EXPECT_EQ(lines[1].log, "y" + std::string(kMax - 1, 'x'));
  EXPECT_EQ(lines[2].log, std::string(10, 'x') + "\n");
  for (const auto& piece : {lines[0], lines[1], lines[2]}) EXPECT_EQ(piece.time, "2023-11-14T22:13:36Z");
  EXPECT_EQ(lines[3].log, std::string(kMax, 'z'));
  EXPECT_EQ(lines[4].log, "\n");
}

TEST_F(JsonFileLogTest, EachStreamKeepsItsOwnUnfinishedLine) {
  auto writer = make_writer();
  ASSERT_TRUE(writer->write(LogStream::kStdout, "out-", kT0));
  ASSERT_TRUE(writer->write(LogStream::kStderr, "err-", kT0));
  ASSERT_TRUE(writer->write(LogStream::kStderr, "line\n", kT0));
  ASSERT_TRUE(writer->write(LogStream::kStdout, "line\n", kT0));
  auto lines = file_lines(path_);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], (Line{"err-line\n", "stderr", "2023-11-14T22:13:20Z"}));
  EXPECT_EQ(lines[1], (Line{"out-line\n", "stdout", "2023-11-14T22:13:20Z"}));
}

TEST_F(JsonFileLogTest, InvalidUtf8StillMakesValidJson) {
  auto writer = make_writer();
  ASSERT_TRUE(writer->write(LogStream::kStdout, "a\xff\xc3(b\n", kT0));
  auto lines = file_lines(path_);  // parses every line
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].log.front(), 'a');
  EXPECT_TRUE(lines[0].log.ends_with("(b\n"));
  EXPECT_NE(lines[0].log.find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
}

TEST_F(JsonFileLogTest, ReopeningAppendsToWhatAnEarlierRunWrote) {
  write_lines(*make_writer(), 2);
  write_lines(*make_writer(), 1, 3);
  EXPECT_EQ(read_texts(path_), (std::vector<std::string>{"1\n", "2\n", "3\n"}));
}

TEST_F(JsonFileLogTest, RotationKeepsMaxFileFilesNewestInThePlainPath) {
  // max-size 1: every entry after the first starts a new file.
  auto writer = make_writer({.max_size = 1, .max_file = 3});
  write_lines(*writer, 5);
  EXPECT_EQ(file_lines(path_ + ".2")[0].log, "3\n");
  EXPECT_EQ(file_lines(path_ + ".1")[0].log, "4\n");
  EXPECT_EQ(file_lines(path_)[0].log, "5\n");
  EXPECT_NE(::access((path_ + ".3").c_str(), F_OK), 0);
  EXPECT_EQ(read_texts(path_), (std::vector<std::string>{"3\n", "4\n", "5\n"}));
}

TEST_F(JsonFileLogTest, RotationRotatesBeforeTheEntryThatWouldStartPastMaxSize) {
  auto writer = make_writer({.max_size = 150, .max_file = 2});
  write_lines(*writer, 4);  // each entry is about 60 bytes: three fit before the size is reached
  EXPECT_EQ(file_lines(path_ + ".1").size(), 3u);
  EXPECT_EQ(file_lines(path_).size(), 1u);
}

TEST_F(JsonFileLogTest, MaxFileOneKeepsOnlyTheLiveFile) {
  auto writer = make_writer({.max_size = 1, .max_file = 1});
  write_lines(*writer, 3);
  EXPECT_NE(::access((path_ + ".1").c_str(), F_OK), 0);
  EXPECT_EQ(read_texts(path_), (std::vector<std::string>{"3\n"}));
}

TEST_F(JsonFileLogTest, TailCountsTheLastEntriesAcrossRotatedFiles) {
  auto writer = make_writer({.max_size = 150, .max_file = 4});
  write_lines(*writer, 10);
  std::vector<std::string> all = read_texts(path_);
  ASSERT_EQ(all.size(), 10u);  // 4 files of up to 3 entries hold them all
  ASSERT_EQ(::access((path_ + ".3").c_str(), F_OK), 0);
  for (uint64_t tail = 0; tail <= all.size() + 2; ++tail) {
    size_t skip = all.size() - std::min<size_t>(tail, all.size());
    EXPECT_EQ(read_texts(path_, {.tail = tail}),
              std::vector<std::string>(all.begin() + static_cast<long>(skip), all.end()))
        << "tail " << tail;
  }
}

TEST_F(JsonFileLogTest, TailCountsBothStreamsBeforeTheStreamFilter) {
  auto writer = make_writer();
  ASSERT_TRUE(writer->write(LogStream::kStdout, "a\n", kT0));
  ASSERT_TRUE(writer->write(LogStream::kStderr, "b\n", kT0));
  ASSERT_TRUE(writer->write(LogStream::kStdout, "c\n", kT0));
  EXPECT_EQ(read_texts(path_, {.show_stderr = false, .tail = 2}), std::vector<std::string>{"c\n"});
  EXPECT_EQ(read_texts(path_, {.show_stdout = false}), std::vector<std::string>{"b\n"});
}

TEST_F(JsonFileLogTest, SinceAndUntilSelectByTimeAsDockerdDoes) {
  auto writer = make_writer();
  write_lines(*writer, 5);  // entry i at kT0 + i s
  EXPECT_EQ(read_texts(path_, {.since = kT0 + seconds(2), .until = kT0 + seconds(4)}),
            (std::vector<std::string>{"2\n", "3\n", "4\n"}));
  EXPECT_EQ(read_texts(path_, {.since = kT0 + milliseconds(4500)}), std::vector<std::string>{"5\n"});
  // Once an entry passed since, later ones pass even if their clock went back.
  ASSERT_TRUE(writer->write(LogStream::kStdout, "early\n", kT0));
  EXPECT_EQ(read_texts(path_, {.since = kT0 + seconds(5)}), (std::vector<std::string>{"5\n", "early\n"}));
}

TEST_F(JsonFileLogTest, CorruptLinesAreSkipped) {
  write_lines(*make_writer(), 1);
  {
    UniqueFd file(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    ASSERT_TRUE(
        write_all(file.get(), "{\"log\":\"cut short\n not json\n{\"log\":\"x\",\"stream\":\"stdout\"}\n"));
  }
  write_lines(*make_writer(), 1, 2);
  EXPECT_EQ(read_texts(path_), (std::vector<std::string>{"1\n", "2\n"}));
}

TEST_F(JsonFileLogTest, AMissingLogIsEmpty) {
  EXPECT_TRUE(read_texts(path_).empty());
}

TEST_F(JsonFileLogTest, EntriesCarryStreamAndTime) {
  auto writer = make_writer();
  ASSERT_TRUE(writer->write(LogStream::kStderr, "x\n", kT0 + milliseconds(5)));
  std::vector<LogEntry> entries;
  ASSERT_TRUE(read_json_file_log(path_, {}, nullptr, nullptr, [&](const LogEntry& entry) {
    entries.push_back(entry);
    return true;
  }));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].stream, LogStream::kStderr);
  EXPECT_EQ(entries[0].time_text, "2023-11-14T22:13:20.005Z");
  EXPECT_EQ(entries[0].time, kT0 + milliseconds(5));
}

// Collects what a follower delivers and lets the test wait for a count.
class Collected {
 public:
  bool add(const LogEntry& entry) {
    std::lock_guard lock(mutex_);
    texts_.push_back(entry.text);
    changed_.notify_all();
    return true;
  }
  void wait_for(size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return texts_.size() >= count; });
  }
  std::vector<std::string> texts() {
    std::lock_guard lock(mutex_);
    return texts_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::string> texts_;
};

std::vector<std::string> numbered(int first, int last) {
  std::vector<std::string> texts;
  for (int i = first; i <= last; ++i) texts.push_back(std::to_string(i) + "\n");
  return texts;
}

TEST_F(JsonFileLogTest, FollowDeliversLaterLinesThroughRotationsAndEndsWhenTheWriterCloses) {
  // One entry per file and two files kept: each rotation unlinks the file before last, so the follower
  // must move on to the new file every time.
  std::shared_ptr<JsonFileLogWriter> writer = make_writer({.max_size = 1, .max_file = 2});
  write_lines(*writer, 2);
  Collected collected;
  Result<void> result = ok();
  std::thread reader([&] {
    result = read_json_file_log(
        path_, {.tail = 1, .follow = true}, writer, [] { return false; },
        [&](const LogEntry& entry) { return collected.add(entry); });
  });
  collected.wait_for(1);
  for (int i = 3; i <= 20; ++i) {
    write_lines(*writer, 1, i);
    collected.wait_for(static_cast<size_t>(i - 1));
  }
  ASSERT_TRUE(writer->write(LogStream::kStdout, "unfinished", kT0));
  ASSERT_TRUE(writer->close());
  reader.join();  // returns only because the writer closed
  ASSERT_TRUE(result) << result.error().message();
  auto expected = numbered(2, 20);
  expected.push_back("unfinished");
  EXPECT_EQ(collected.texts(), expected);
}

TEST_F(JsonFileLogTest, FollowKeepsUpWithABurstOfRotationsWhenFilesAreKept) {
  std::shared_ptr<JsonFileLogWriter> writer = make_writer({.max_size = 100, .max_file = 1000});
  Collected collected;
  Result<void> result = ok();
  std::thread reader([&] {
    result = read_json_file_log(path_, {.follow = true}, writer, nullptr,
                                [&](const LogEntry& entry) { return collected.add(entry); });
  });
  write_lines(*writer, 300);  // no waiting: the follower may miss several rotations at once
  ASSERT_TRUE(writer->close());
  reader.join();
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(collected.texts(), numbered(1, 300));
}

TEST_F(JsonFileLogTest, FollowStopsWhenAskedOrWhenTheCallbackSaysSo) {
  std::shared_ptr<JsonFileLogWriter> writer = make_writer();
  write_lines(*writer, 3);
  std::atomic<bool> stop = false;
  Collected collected;
  std::thread reader([&] {
    ASSERT_TRUE(read_json_file_log(
        path_, {.follow = true}, writer, [&] { return stop.load(); },
        [&](const LogEntry& entry) { return collected.add(entry); }));
  });
  collected.wait_for(3);
  stop = true;
  reader.join();  // the writer is still open: only should_stop ends this

  size_t delivered = 0;
  ASSERT_TRUE(read_json_file_log(path_, {.follow = true}, writer, nullptr,
                                 [&](const LogEntry&) { return ++delivered < 2; }));
  EXPECT_EQ(delivered, 2u);
}

TEST_F(JsonFileLogTest, FollowWithoutAWriterEndsAtTheEnd) {
  write_lines(*make_writer(), 2);
  EXPECT_EQ(read_texts(path_, {.follow = true}), numbered(1, 2));
}

TEST(JsonFileLogOptionsTest, ParsesDockerdsOptions) {
  auto options = parse_json_file_log_options({{"max-size", "10m"}, {"max-file", "3"}, {"tag", "x"}});
  ASSERT_TRUE(options) << options.error().message();
  EXPECT_EQ(options->max_size, 10'000'000);
  EXPECT_EQ(options->max_file, 3);
  auto defaults = parse_json_file_log_options({});
  ASSERT_TRUE(defaults);
  EXPECT_FALSE(defaults->max_size);
  EXPECT_EQ(defaults->max_file, 1);
  EXPECT_TRUE(validate_json_file_options({{"max-file", "5"}}));  // accepted by dockerd, rotates nothing
  EXPECT_TRUE(validate_json_file_options({{"max-size", "1k"}, {"max-file", "2"}, {"compress", "true"}}));
}

TEST(JsonFileLogOptionsTest, RefusesInDockerdsWords) {
  using Opts = std::map<std::string, std::string>;
  std::vector<std::pair<Opts, std::string>> cases = {
      {{{"foo", "1"}}, "unknown log opt 'foo' for json-file log driver"},
      {{{"max-size", "-1"}}, "invalid size: '-1'"},
      {{{"max-size", "0"}}, "max-size must be a positive number"},
      {{{"max-size", "10q"}}, "invalid suffix: 'q'"},
      {{{"max-file", "0"}}, "max-file cannot be less than 1"},
      {{{"max-file", "two"}}, "strconv.Atoi: parsing \"two\": invalid syntax"},
      {{{"max-file", "99999999999999999999"}},
       "strconv.Atoi: parsing \"99999999999999999999\": value out of range"},
      {{{"compress", "yes"}}, "strconv.ParseBool: parsing \"yes\": invalid syntax"},
      {{{"compress", "true"}, {"max-size", "1k"}},
       "compress cannot be true when max-file is less than 2 or max-size is not set"},
  };
  for (const auto& [opts, message] : cases) {
    auto result = validate_json_file_options(opts);
    ASSERT_FALSE(result) << message;
    EXPECT_EQ(result.error().category(), ErrorCategory::kInvalidArgument);
    EXPECT_EQ(result.error().message(), message);
  }
}

}  // namespace
}  // namespace kiln::daemon::containers
