#include "common/stdcopy.h"

#include <gtest/gtest.h>

namespace kiln::stdcopy {
namespace {

TEST(Stdcopy, FrameHasDockersHeader) {
  EXPECT_EQ(frame(kStderr, "hi"), std::string("\x02\0\0\0\0\0\0\x02hi", 10));
  EXPECT_EQ(frame(kStdout, std::string(0x10203, 'x')).substr(0, 8),
            std::string("\x01\0\0\0\0\x01\x02\x03", 8));
}

TEST(StdcopyDemuxer, FramesSplitAnywhere) {
  std::string stream = frame(1, "out") + frame(2, "err") + frame(1, std::string(70000, 'x'));
  for (size_t step : {1, 3, 8, 11, 4096}) {
    Demuxer demuxer;
    std::string out, err;
    for (size_t i = 0; i < stream.size(); i += step) {
      ASSERT_TRUE(
          demuxer.feed(std::string_view(stream).substr(i, step), [&](int which, std::string_view data) {
            (which == 2 ? err : out).append(data);
            return true;
          }));
    }
    EXPECT_EQ(out, "out" + std::string(70000, 'x')) << step;
    EXPECT_EQ(err, "err");
    EXPECT_EQ(demuxer.pending(), 0u);
  }
}

}  // namespace
}  // namespace kiln::stdcopy
